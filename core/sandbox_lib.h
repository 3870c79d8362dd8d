/* Safe versions of the standard library functions whose work happens inside one C call.
 *
 * The sandbox's instruction budget and time limit are checked by a count hook, which fires
 * between VM instructions; a C library function runs no instructions, so whatever it does in
 * one call is invisible to both. For most of the library that work is bounded by the memory the
 * call allocates (string.upper copies its argument once), and the memory cap bounds it. These
 * are the functions where it is not: an empty string repeated 2^63 times allocates nothing,
 * table.move over 2^50 absent keys or table.insert into a table whose __len lies allocates
 * nothing, table.sort can compare the same two 30 MB strings millions of times, table.concat
 * can read 2^50 empty strings through a C __index; os.date runs strftime for every two bytes
 * of its format (0.66 s for a format that fits under the memory cap). The versions here answer
 * exactly like Lua
 * 5.4.4's (spec/unit/test_sandbox_lib.c checks them against it) but pay for their steps as they
 * go, through a charge callback, so the sandbox can stop them like any runaway loop.
 *
 * Coroutines are here too, for the same reason seen from the other side: the sandbox must know
 * which thread runs (the watchdog stops the running thread at its next instruction once the
 * time limit has passed, and only the running thread executes instructions), and a coroutine
 * is entered and left only through coroutine.resume, a wrap function and coroutine.close.
 *
 * Knows nothing of the sandbox: the host's callbacks are the only way out. */
#ifndef MOONWIRE_SANDBOX_LIB_H
#define MOONWIRE_SANDBOX_LIB_H

#include <stdbool.h>
#include <stddef.h>

#include <lua.h>

/* The functions pay the charge callback once this much work has gathered, and the rest before
 * they return. A unit is one step of library work: one element moved, shifted, read or
 * compared, one call of a comparison function, 64 bytes of two strings compared, one byte of a
 * date format (a conversion counts 16). Each costs about as much as a few VM instructions and
 * is charged as one, like a step of the pattern matcher (lpattern.h). Small, because a single
 * step can itself be slow (an element read through a long chain of colliding hash keys). */
#define SBLIB_CHARGE_EVERY 32

/* What the functions need from their host. */
struct sblib_host {
    /* Charges work (> 0) done inside a library function, on thread L, which is running it.
     * Returns true to let the function go on; it may also raise a Lua error itself (the
     * sandbox's budget message). If it returns false, the function raises "<name>: the work
     * exceeded the instruction budget". Either way the error unwinds safely: the functions hold
     * nothing that needs releasing. The stack must be left as it was. */
    bool (*charge)(lua_State *L, size_t work);
    /* Coroutine co has just been made by coroutine.create or coroutine.wrap, on thread L. Must
     * not raise. May be NULL. */
    void (*thread_made)(lua_State *L, lua_State *co);
    /* Thread `to` is about to run instructions: a coroutine being resumed or closed (its
     * to-be-closed variables' __close methods are Lua code) by thread L, or L itself again once
     * that is over, whatever the outcome. Must not raise. May be NULL. */
    void (*thread_runs)(lua_State *L, lua_State *to);
    /* Whether the running callback is being stopped (budget, time, memory). A coroutine the
     * stop's hook error went through has hooks off for good (Lua leaves its allowhook clear),
     * so its __close methods must not run: they would escape every limit. May be NULL. */
    bool (*stopping)(lua_State *L);
};

/* Replaces, in the library tables held by the table at index libs (fields "string", "table",
 * "coroutine", "os"), string.rep; table.concat, insert, move, remove, sort and unpack;
 * coroutine.close, create, resume and wrap; and os.date, with versions that report to host
 * (copied; it need not outlive the call). Leaves the stack as it was. May raise a memory
 * error. */
void sblib_install(lua_State *L, int libs, const struct sblib_host *host);

#endif
