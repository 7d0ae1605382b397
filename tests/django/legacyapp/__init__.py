"""legacyapp: a Django app shaped like the legacy facility-management application pgshim sits in
front of: tenant databases routed by a thread-local router, unmanaged models over the fixture
tables (tests/fixture creates the schema), and the legacy call sites with their exact SQL."""
