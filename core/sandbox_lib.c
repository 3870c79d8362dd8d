/* Library functions that pay for their work: see sandbox_lib.h.
 *
 * Each follows Lua 5.4.4's own (lstrlib.c, ltablib.c, lcorolib.c, loslib.c; Copyright (C)
 * 1994-2022 Lua.org, PUC-Rio, MIT license) step by step on purpose, with the same arguments,
 * results, order of metamethod calls, sort pivots and error messages, so an app cannot tell
 * them apart except by what they cost; spec/unit/test_sandbox_lib.c runs both on a table of
 * cases. What is added is a meter: work is counted as it is done and paid to the host's charge
 * callback every SBLIB_CHARGE_EVERY units. */
#include "sandbox_lib.h"

#include <limits.h>
#include <locale.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>

/* The largest string string.rep makes, as in lstrlib.c. */
#define MAXSIZE ((size_t)INT_MAX)

/* Strings compared by table.sort are paid for per block of this many bytes: between blocks
 * the host may stop a comparison of two long strings. */
#define CMP_BLOCK 4096
#define BYTES_PER_UNIT 64

/* Upvalue 1 of every function here: the host's callbacks, in a userdata. */
static const struct sblib_host *host_of(lua_State *L)
{
    return lua_touserdata(L, lua_upvalueindex(1));
}

/* ---- the meter ----------------------------------------------------------------------------- */

struct meter {
    lua_State *L;
    const struct sblib_host *host;
    const char *what; /* "table.move", for the error when the host says stop by returning */
    size_t work;      /* units not paid yet */
};

static struct meter meter_start(lua_State *L, const char *what)
{
    return (struct meter){ .L = L, .host = host_of(L), .what = what, .work = 0 };
}

/* Pays for everything counted so far. The count is cleared first, so the meter is consistent
 * even when the callback raises. */
static void meter_pay(struct meter *m)
{
    size_t w = m->work;
    if (w == 0) return;
    m->work = 0;
    if (!m->host->charge(m->L, w))
        luaL_error(m->L, "%s: the work exceeded the instruction budget", m->what);
}

/* Hot: an addition and a test per step; the callback every SBLIB_CHARGE_EVERY units. */
static inline void meter_spend(struct meter *m, size_t units)
{
    m->work += units;
    if (m->work >= SBLIB_CHARGE_EVERY) meter_pay(m);
}

/* ---- string.rep ---------------------------------------------------------------------------- */

/* string.rep(s, n [, sep]). Lua's copies s and sep once per repetition, so an empty s and sep
 * loop n times (2^63 at most) making nothing. Here an empty result is known at once, and a
 * non-empty one is filled by doubling what is already written: a handful of memcpy calls,
 * whose work is bounded by the size of the result, which the memory cap bounds. */
static int sblib_rep(lua_State *L)
{
    size_t l, lsep;
    const char *s = luaL_checklstring(L, 1, &l);
    lua_Integer n = luaL_checkinteger(L, 2);
    const char *sep = luaL_optlstring(L, 3, "", &lsep);
    if (n <= 0 || l + lsep == 0) {
        lua_pushliteral(L, "");
        return 1;
    }
    if (l + lsep < l || l + lsep > MAXSIZE / (lua_Unsigned)n)
        return luaL_error(L, "resulting string too large");
    size_t reps = (size_t)n;
    size_t total = reps * l + (reps - 1) * lsep;
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, total);
    memcpy(p, s, l);
    if (reps > 1) {
        /* After the first s come n - 1 units of sep .. s. */
        char *units = p + l;
        size_t unit = lsep + l, want = (reps - 1) * unit;
        memcpy(units, sep, lsep);
        memcpy(units + lsep, s, l);
        for (size_t done = unit; done < want;) {
            size_t k = done < want - done ? done : want - done;
            memcpy(units + done, units, k);
            done += k;
        }
    }
    luaL_pushresultsize(&b, total);
    return 1;
}

/* ---- table functions ----------------------------------------------------------------------- */

/* What an argument must support to stand in for a table (ltablib.c's checktab). */
#define TAB_R 1
#define TAB_W 2
#define TAB_L 4
#define TAB_RW (TAB_R | TAB_W)

static int checkfield(lua_State *L, const char *key, int n)
{
    lua_pushstring(L, key);
    return lua_rawget(L, -n) != LUA_TNIL;
}

static void checktab(lua_State *L, int arg, int what)
{
    if (lua_type(L, arg) == LUA_TTABLE) return;
    int n = 1;
    if (lua_getmetatable(L, arg) && (!(what & TAB_R) || checkfield(L, "__index", ++n)) &&
        (!(what & TAB_W) || checkfield(L, "__newindex", ++n)) &&
        (!(what & TAB_L) || checkfield(L, "__len", ++n)))
        lua_pop(L, n);
    else
        luaL_checktype(L, arg, LUA_TTABLE); /* raises */
}

static lua_Integer aux_getn(lua_State *L, int arg, int what)
{
    checktab(L, arg, what | TAB_L);
    return luaL_len(L, arg);
}

/* table.insert(t, [pos,] v): with a position, the elements from there to #t move up one, and
 * #t is whatever __len says (2^50, say). */
static int sblib_insert(lua_State *L)
{
    lua_Integer pos;
    lua_Integer e = aux_getn(L, 1, TAB_RW);
    e = luaL_intop(+, e, 1); /* the first empty slot */
    switch (lua_gettop(L)) {
    case 2:
        pos = e;
        break;
    case 3: {
        pos = luaL_checkinteger(L, 2);
        luaL_argcheck(L, (lua_Unsigned)pos - 1u < (lua_Unsigned)e, 2, "position out of bounds");
        struct meter m = meter_start(L, "table.insert");
        for (lua_Integer i = e; i > pos; i--) {
            lua_geti(L, 1, i - 1);
            lua_seti(L, 1, i);
            meter_spend(&m, 1);
        }
        meter_pay(&m);
        break;
    }
    default:
        return luaL_error(L, "wrong number of arguments to 'insert'");
    }
    lua_seti(L, 1, pos);
    return 0;
}

/* table.remove(t [, pos]): the elements after pos move down one, up to #t. */
static int sblib_remove(lua_State *L)
{
    lua_Integer size = aux_getn(L, 1, TAB_RW);
    lua_Integer pos = luaL_optinteger(L, 2, size);
    if (pos != size)
        luaL_argcheck(L, (lua_Unsigned)pos - 1u <= (lua_Unsigned)size, 1, /* sic, 5.4.4 */
                      "position out of bounds");
    lua_geti(L, 1, pos);
    struct meter m = meter_start(L, "table.remove");
    for (; pos < size; pos++) {
        lua_geti(L, 1, pos + 1);
        lua_seti(L, 1, pos);
        meter_spend(&m, 1);
    }
    meter_pay(&m);
    lua_pushnil(L);
    lua_seti(L, 1, pos);
    return 1;
}

/* table.move(a1, f, e, t [, a2]): e - f + 1 elements, up to 2^63, absent ones included. */
static int sblib_move(lua_State *L)
{
    lua_Integer f = luaL_checkinteger(L, 2);
    lua_Integer e = luaL_checkinteger(L, 3);
    lua_Integer t = luaL_checkinteger(L, 4);
    int tt = !lua_isnoneornil(L, 5) ? 5 : 1; /* the destination */
    checktab(L, 1, TAB_R);
    checktab(L, tt, TAB_W);
    if (e >= f) {
        luaL_argcheck(L, f > 0 || e < LUA_MAXINTEGER + f, 3, "too many elements to move");
        lua_Integer n = e - f + 1;
        luaL_argcheck(L, t <= LUA_MAXINTEGER - n + 1, 4, "destination wrap around");
        struct meter m = meter_start(L, "table.move");
        if (t > e || t <= f || (tt != 1 && !lua_compare(L, 1, tt, LUA_OPEQ))) {
            for (lua_Integer i = 0; i < n; i++) {
                lua_geti(L, 1, f + i);
                lua_seti(L, tt, t + i);
                meter_spend(&m, 1);
            }
        } else {
            for (lua_Integer i = n - 1; i >= 0; i--) {
                lua_geti(L, 1, f + i);
                lua_seti(L, tt, t + i);
                meter_spend(&m, 1);
            }
        }
        meter_pay(&m);
    }
    lua_pushvalue(L, tt);
    return 1;
}

static void addfield(lua_State *L, luaL_Buffer *b, lua_Integer i)
{
    lua_geti(L, 1, i);
    if (!lua_isstring(L, -1))
        luaL_error(L, "invalid value (%s) at index %I in table for 'concat'",
                   luaL_typename(L, -1), (LUAI_UACINT)i);
    luaL_addvalue(b);
}

/* table.concat(t [, sep [, i [, j]]]): j - i + 1 reads, each of which may be an empty string
 * handed out by a C __index, so the result's size bounds nothing. */
static int sblib_concat(lua_State *L)
{
    luaL_Buffer b;
    lua_Integer last = aux_getn(L, 1, TAB_R);
    size_t lsep;
    const char *sep = luaL_optlstring(L, 2, "", &lsep);
    lua_Integer i = luaL_optinteger(L, 3, 1);
    last = luaL_optinteger(L, 4, last);
    struct meter m = meter_start(L, "table.concat");
    luaL_buffinit(L, &b);
    for (; i < last; i++) {
        addfield(L, &b, i);
        luaL_addlstring(&b, sep, lsep);
        meter_spend(&m, 1);
    }
    if (i == last) addfield(L, &b, i);
    meter_pay(&m);
    luaL_pushresult(&b);
    return 1;
}

/* table.unpack(t [, i [, j]]): at most a stack's worth of reads (a million), but each may run a
 * C __index, so they are paid for like the others. */
static int sblib_unpack(lua_State *L)
{
    lua_Integer i = luaL_optinteger(L, 2, 1);
    lua_Integer e = luaL_opt(L, luaL_checkinteger, 3, luaL_len(L, 1));
    if (i > e) return 0;
    lua_Unsigned n = (lua_Unsigned)e - (lua_Unsigned)i; /* elements minus 1 */
    if (n >= (unsigned int)INT_MAX || !lua_checkstack(L, (int)(++n)))
        return luaL_error(L, "too many results to unpack");
    struct meter m = meter_start(L, "table.unpack");
    for (; i < e; i++) {
        lua_geti(L, 1, i);
        meter_spend(&m, 1);
    }
    lua_geti(L, 1, e);
    meter_pay(&m);
    return (int)n;
}

/* ---- table.sort ---------------------------------------------------------------------------- */

/* Lua 5.4.4's quicksort (ltablib.c, after Sedgewick), with the same pivots and comparisons in
 * the same order, and a meter on the comparisons. Without a comparison function, two strings
 * are compared here, bytewise in blocks, each block paid for: Lua compares them with strcoll
 * one NUL-separated segment at a time, so two 30 MB strings of zero bytes take 0.2 s a
 * comparison, and a sort of a table holding the same two strings a million times would take
 * days inside one call. In the C locale (moonwire never sets another) strcoll is strcmp, and
 * segment by segment strcmp orders exactly as memcmp over the shorter length, then the shorter
 * first; under another collation the comparison is left to Lua, paid for by length. */

typedef unsigned int IdxT;

#define RANLIMIT 100u

struct sorter {
    struct meter m;
    bool bytewise; /* LC_COLLATE is "C" or "POSIX": strings compare as bytes */
};

static unsigned int randomize_pivot(void)
{
    clock_t c = clock();
    time_t t = time(NULL);
    unsigned int buf[(sizeof c + sizeof t) / sizeof(unsigned int)];
    unsigned int rnd = 0;
    memcpy(buf, &c, (sizeof c / sizeof(unsigned int)) * sizeof(unsigned int));
    memcpy(buf + sizeof c / sizeof(unsigned int), &t,
           (sizeof t / sizeof(unsigned int)) * sizeof(unsigned int));
    for (size_t i = 0; i < sizeof buf / sizeof buf[0]; i++) rnd += buf[i];
    return rnd;
}

static void set2(lua_State *L, IdxT i, IdxT j)
{
    lua_seti(L, 1, i);
    lua_seti(L, 1, j);
}

/* a < b for two strings, as Lua's l_strcmp in the C locale. */
static int string_less(struct sorter *so, const char *a, size_t la, const char *b, size_t lb)
{
    if (a == b && la == lb) return 0; /* the same string: a frequent case in a hostile table */
    size_t n = la < lb ? la : lb;
    for (size_t off = 0; off < n;) {
        size_t k = n - off < CMP_BLOCK ? n - off : CMP_BLOCK;
        int r = memcmp(a + off, b + off, k);
        off += k;
        meter_spend(&so->m, k / BYTES_PER_UNIT);
        if (r != 0) return r < 0;
    }
    return la < lb;
}

/* Whether the value at index a sorts before the one at b: the order function (at index 2), or
 * the < operator. */
static int sort_comp(struct sorter *so, int a, int b)
{
    lua_State *L = so->m.L;
    meter_spend(&so->m, 1);
    if (lua_isnil(L, 2)) {
        if (lua_type(L, a) == LUA_TSTRING && lua_type(L, b) == LUA_TSTRING) {
            size_t la, lb;
            const char *sa = lua_tolstring(L, a, &la), *sb = lua_tolstring(L, b, &lb);
            if (so->bytewise) return string_less(so, sa, la, sb, lb);
            meter_spend(&so->m, (la < lb ? la : lb) / BYTES_PER_UNIT);
        }
        return lua_compare(L, a, b, LUA_OPLT);
    }
    lua_pushvalue(L, 2);
    lua_pushvalue(L, a - 1); /* -1: the function above it */
    lua_pushvalue(L, b - 2); /* -2: the function and a */
    lua_call(L, 2, 1);
    int res = lua_toboolean(L, -1);
    lua_pop(L, 1);
    return res;
}

/* Partitions a[lo..up] around the pivot P at the top of the stack (a[lo] <= P == a[up - 1] <=
 * a[up]); returns P's final index. */
static IdxT partition(struct sorter *so, IdxT lo, IdxT up)
{
    lua_State *L = so->m.L;
    IdxT i = lo, j = up - 1;
    for (;;) {
        while ((void)lua_geti(L, 1, ++i), sort_comp(so, -1, -2)) {
            if (i == up - 1) luaL_error(L, "invalid order function for sorting");
            lua_pop(L, 1);
        }
        while ((void)lua_geti(L, 1, --j), sort_comp(so, -3, -1)) {
            if (j < i) luaL_error(L, "invalid order function for sorting");
            lua_pop(L, 1);
        }
        if (j < i) {
            lua_pop(L, 1);
            set2(L, up - 1, i);
            return i;
        }
        set2(L, i, j);
    }
}

static IdxT choose_pivot(IdxT lo, IdxT up, unsigned int rnd)
{
    IdxT r4 = (up - lo) / 4;
    return rnd % (r4 * 2) + (lo + r4);
}

static void auxsort(struct sorter *so, IdxT lo, IdxT up, unsigned int rnd)
{
    lua_State *L = so->m.L;
    while (lo < up) {
        IdxT p, n;
        lua_geti(L, 1, lo);
        lua_geti(L, 1, up);
        if (sort_comp(so, -1, -2)) set2(L, lo, up);
        else lua_pop(L, 2);
        if (up - lo == 1) return;
        if (up - lo < RANLIMIT || rnd == 0) p = (lo + up) / 2;
        else p = choose_pivot(lo, up, rnd);
        lua_geti(L, 1, p);
        lua_geti(L, 1, lo);
        if (sort_comp(so, -2, -1)) {
            set2(L, p, lo);
        } else {
            lua_pop(L, 1);
            lua_geti(L, 1, up);
            if (sort_comp(so, -1, -2)) set2(L, p, up);
            else lua_pop(L, 2);
        }
        if (up - lo == 2) return;
        lua_geti(L, 1, p);
        lua_pushvalue(L, -1);
        lua_geti(L, 1, up - 1);
        set2(L, p, up - 1);
        p = partition(so, lo, up);
        if (p - lo < up - p) {
            auxsort(so, lo, p - 1, rnd);
            n = p - lo;
            lo = p + 1;
        } else {
            auxsort(so, p + 1, up, rnd);
            n = up - p;
            up = p - 1;
        }
        if ((up - lo) / 128 > n) rnd = randomize_pivot();
    }
}

static bool collation_is_bytewise(void)
{
    const char *c = setlocale(LC_COLLATE, NULL);
    return c && (strcmp(c, "C") == 0 || strcmp(c, "POSIX") == 0);
}

static int sblib_sort(lua_State *L)
{
    lua_Integer n = aux_getn(L, 1, TAB_RW);
    if (n > 1) {
        luaL_argcheck(L, n < INT_MAX, 1, "array too big");
        if (!lua_isnoneornil(L, 2)) luaL_checktype(L, 2, LUA_TFUNCTION);
        lua_settop(L, 2);
        struct sorter so = { .m = meter_start(L, "table.sort"),
                             .bytewise = collation_is_bytewise() };
        auxsort(&so, 1, (IdxT)n, 0);
        meter_pay(&so.m);
    }
    return 0;
}

/* ---- os.date ------------------------------------------------------------------------------- */

/* os.date(format [, time]), as loslib.c's, with each conversion paid for. Lua's runs strftime
 * once per conversion, ~50 ns each, and "%n" (a newline) costs 2 bytes of format: a 24 MiB
 * format, which fits under the default memory cap, took 0.66 s in one call. The table form
 * ("*t") is left to Lua's own function (upvalue 2), once this one has checked what could make
 * it raise, so that its errors name the caller's line as Lua's do. */

/* The conversions Lua accepts (loslib.c's L_STRFTIMEC99), grouped by length after "||". */
#define STRFTIME_OPTIONS "aAbBcCdDeFgGhHIjmMnprRStTuUVwWxXyYzZ%" \
                         "||" "EcECExEXEyEY" "OdOeOHOIOmOMOSOuOUOVOwOWOy"
#define SIZETIMEFMT 250
/* A conversion costs about as much as this many instructions. */
#define DATE_CONVERSION_UNITS 16

/* Copies the conversion at conv (after the '%') into buff; returns what follows it. Raises as
 * Lua's checkoption does, naming the rest of the format. */
static const char *checkoption(lua_State *L, const char *conv, ptrdiff_t convlen, char *buff)
{
    const char *option = STRFTIME_OPTIONS;
    int oplen = 1;
    for (; *option != '\0' && oplen <= convlen; option += oplen) {
        if (*option == '|') {
            oplen++;
        } else if (memcmp(conv, option, (size_t)oplen) == 0) {
            memcpy(buff, conv, (size_t)oplen);
            buff[oplen] = '\0';
            return conv + oplen;
        }
    }
    luaL_argerror(L, 1, lua_pushfstring(L, "invalid conversion specifier '%%%s'", conv));
    return conv;
}

static int sblib_date(lua_State *L)
{
    size_t slen;
    const char *s = luaL_optlstring(L, 1, "%c", &slen);
    time_t t;
    if (lua_isnoneornil(L, 2)) {
        t = time(NULL);
    } else {
        lua_Integer i = luaL_checkinteger(L, 2);
        t = (time_t)i;
        luaL_argcheck(L, (lua_Integer)t == i, 2, "time out-of-bounds");
    }
    const char *se = s + slen;
    struct tm tmr, *stm;
    if (*s == '!') {
        stm = gmtime_r(&t, &tmr);
        s++;
    } else {
        stm = localtime_r(&t, &tmr);
    }
    if (stm == NULL) return luaL_error(L, "date result cannot be represented in this installation");
    if (strcmp(s, "*t") == 0) {
        lua_pushvalue(L, lua_upvalueindex(2));
        lua_pushvalue(L, 1);
        lua_pushinteger(L, (lua_Integer)t);
        lua_call(L, 2, 1);
        return 1;
    }
    struct meter m = meter_start(L, "os.date");
    char cc[4];
    luaL_Buffer b;
    cc[0] = '%';
    luaL_buffinit(L, &b);
    while (s < se) {
        if (*s != '%') {
            luaL_addchar(&b, *s++);
            meter_spend(&m, 1);
        } else {
            char *buff = luaL_prepbuffsize(&b, SIZETIMEFMT);
            s++;
            s = checkoption(L, s, se - s, cc + 1);
            luaL_addsize(&b, strftime(buff, SIZETIMEFMT, cc, stm));
            meter_spend(&m, DATE_CONVERSION_UNITS);
        }
    }
    meter_pay(&m);
    luaL_pushresult(&b);
    return 1;
}

/* ---- coroutines ---------------------------------------------------------------------------- */

/* The host hears of every thread switch: before a coroutine runs, and after, when its resumer
 * runs again. lua_resume and lua_resetthread never raise, so the second call always comes. */
static void runs(lua_State *L, lua_State *to)
{
    const struct sblib_host *h = host_of(L);
    if (h->thread_runs) h->thread_runs(L, to);
}

static lua_State *getco(lua_State *L)
{
    lua_State *co = lua_tothread(L, 1);
    luaL_argexpected(L, co, 1, "thread");
    return co;
}

/* Resumes co with narg arguments from L's top; returns the number of results moved to L, or -1
 * with an error message on L. */
static int auxresume(lua_State *L, lua_State *co, int narg)
{
    int status, nres;
    if (!lua_checkstack(co, narg)) {
        lua_pushliteral(L, "too many arguments to resume");
        return -1;
    }
    lua_xmove(L, co, narg);
    runs(L, co);
    status = lua_resume(co, L, narg, &nres);
    runs(L, L);
    if (status == LUA_OK || status == LUA_YIELD) {
        if (!lua_checkstack(L, nres + 1)) {
            lua_pop(co, nres);
            lua_pushliteral(L, "too many results to resume");
            return -1;
        }
        lua_xmove(co, L, nres);
        return nres;
    }
    lua_xmove(co, L, 1);
    return -1;
}

static int sblib_coresume(lua_State *L)
{
    lua_State *co = getco(L);
    int r = auxresume(L, co, lua_gettop(L) - 1);
    if (r < 0) {
        lua_pushboolean(L, 0);
        lua_insert(L, -2);
        return 2;
    }
    lua_pushboolean(L, 1);
    lua_insert(L, -(r + 1));
    return r + 1;
}

/* Closes co's pending to-be-closed variables, running their __close methods in co. */
static int close_thread(lua_State *L, lua_State *co)
{
    const struct sblib_host *h = host_of(L);
    if (h->stopping && h->stopping(L) && lua_status(co) != LUA_OK && lua_status(co) != LUA_YIELD)
        return lua_status(co); /* left for the collector, its variables unclosed */
    runs(L, co);
    int status = lua_resetthread(co);
    runs(L, L);
    return status;
}

/* The function coroutine.wrap returns. Upvalue 2: the coroutine. */
static int auxwrap(lua_State *L)
{
    lua_State *co = lua_tothread(L, lua_upvalueindex(2));
    int r = auxresume(L, co, lua_gettop(L));
    if (r < 0) {
        int stat = lua_status(co);
        if (stat != LUA_OK && stat != LUA_YIELD) { /* an error in the coroutine */
            stat = close_thread(L, co);
            lua_xmove(co, L, 1);
        }
        if (stat != LUA_ERRMEM && lua_type(L, -1) == LUA_TSTRING) {
            luaL_where(L, 1);
            lua_insert(L, -2);
            lua_concat(L, 2);
        }
        return lua_error(L);
    }
    return r;
}

static int sblib_cocreate(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TFUNCTION);
    lua_State *co = lua_newthread(L);
    lua_pushvalue(L, 1);
    lua_xmove(L, co, 1);
    const struct sblib_host *h = host_of(L);
    if (h->thread_made) h->thread_made(L, co);
    return 1;
}

static int sblib_cowrap(lua_State *L)
{
    sblib_cocreate(L);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, -2);
    lua_pushcclosure(L, auxwrap, 2);
    return 1;
}

enum { COS_RUN, COS_DEAD, COS_YIELD, COS_NORM };
static const char *const statname[] = { "running", "dead", "suspended", "normal" };

static int auxstatus(lua_State *L, lua_State *co)
{
    if (L == co) return COS_RUN;
    switch (lua_status(co)) {
    case LUA_YIELD:
        return COS_YIELD;
    case LUA_OK: {
        lua_Debug ar;
        if (lua_getstack(co, 0, &ar)) return COS_NORM;
        return lua_gettop(co) == 0 ? COS_DEAD : COS_YIELD;
    }
    default:
        return COS_DEAD;
    }
}

static int sblib_coclose(lua_State *L)
{
    lua_State *co = getco(L);
    int status = auxstatus(L, co);
    if (status != COS_DEAD && status != COS_YIELD)
        return luaL_error(L, "cannot close a %s coroutine", statname[status]);
    if (close_thread(L, co) == LUA_OK) {
        lua_pushboolean(L, 1);
        return 1;
    }
    lua_pushboolean(L, 0);
    lua_xmove(co, L, 1);
    return 2;
}

/* ---- installing ---------------------------------------------------------------------------- */

static void set_funcs(lua_State *L, int libs, const char *lib, const luaL_Reg *funcs, int host)
{
    lua_getfield(L, libs, lib);
    for (; funcs->name; funcs++) {
        lua_pushvalue(L, host);
        lua_pushcclosure(L, funcs->func, 1);
        lua_setfield(L, -2, funcs->name);
    }
    lua_pop(L, 1);
}

/* os.date, with Lua's own as upvalue 2. */
static void set_date(lua_State *L, int libs, int host)
{
    lua_getfield(L, libs, "os");
    lua_pushvalue(L, host);
    lua_getfield(L, -2, "date");
    lua_pushcclosure(L, sblib_date, 2);
    lua_setfield(L, -2, "date");
    lua_pop(L, 1);
}

void sblib_install(lua_State *L, int libs, const struct sblib_host *host)
{
    static const luaL_Reg string_funcs[] = { { "rep", sblib_rep }, { NULL, NULL } };
    static const luaL_Reg table_funcs[] = {
        { "concat", sblib_concat }, { "insert", sblib_insert }, { "move", sblib_move },
        { "remove", sblib_remove }, { "sort", sblib_sort },     { "unpack", sblib_unpack },
        { NULL, NULL },
    };
    static const luaL_Reg coroutine_funcs[] = {
        { "close", sblib_coclose }, { "create", sblib_cocreate },
        { "resume", sblib_coresume }, { "wrap", sblib_cowrap },
        { NULL, NULL },
    };
    libs = lua_absindex(L, libs);
    struct sblib_host *copy = lua_newuserdatauv(L, sizeof *copy, 0);
    *copy = *host;
    int h = lua_gettop(L);
    set_funcs(L, libs, "string", string_funcs, h);
    set_funcs(L, libs, "table", table_funcs, h);
    set_funcs(L, libs, "coroutine", coroutine_funcs, h);
    set_date(L, libs, h);
    lua_pop(L, 1);
}
