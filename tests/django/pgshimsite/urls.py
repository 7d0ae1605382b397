"""No views: the project exists to drive the database layer through pgshim."""
urlpatterns = []
