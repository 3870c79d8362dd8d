/* moonwire test: runs Busted specs inside the real runtime. The specs run in a Lua state of the
 * host (not a sandbox) that has the C module moonwire.testkit: it starts an app in a loop
 * context of its own, loaded exactly as the server loads it, connects clients to it over
 * socketpairs through the real connection layer, and moves the apps' virtual clock.
 * scripts/moonwire/test.lua is the API specs use (docs/testing.md). */
#ifndef MOONWIRE_TESTKIT_H
#define MOONWIRE_TESTKIT_H

/* `moonwire test [SPECS...] [busted options]`: argv[0] is "test". scripts_dir: the shipped
 * scripts (moonwire.test, and what apps require). Returns the exit status: 0 when every spec
 * passed, 1 when one failed or could not run. */
int testkit_main(int argc, char **argv, const char *scripts_dir);

#endif
