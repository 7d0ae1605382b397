/*
 * What every fuzz target links: the invariant-failure reporter. Kept apart from replay.c so
 * the libFuzzer builds (which bring their own main) share it.
 */
#include <stdio.h>
#include <stdlib.h>

#include "fuzz_input.h"

void fz_fail(const char *file, int line, const char *what)
{
    fprintf(stderr, "%s:%d: invariant failed: %s\n", file, line, what);
    abort();
}
