/* Lua 5.4 patterns with a step budget: find, match, gmatch and gsub, written from the Lua 5.4
 * reference manual (section 6.4.1 and the descriptions in 6.4) and checked against Lua 5.4.4 by
 * differential tests (spec/unit/test_lpattern.c).
 *
 * The matcher is a backtracking interpreter working straight from the pattern text. It does not
 * compile the pattern first on purpose: Lua reports a malformed item only when matching reaches
 * it (("b"):find("a[") is nil, ("a"):find("a[") an error), and where the recursion happens
 * decides when "pattern too complex" is raised, so both must follow the same path as Lua's to
 * give the same answers. What is added is the meter: every unit of work is spent from a small
 * allowance of fuel, and when it runs out the charge callback is paid (see lpattern.h). */
#include "lpattern.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

/* A capture's len while its ')' has not been matched yet, and for a position capture "()". */
#define CAP_OPEN (-1)
#define CAP_POSITION (-2)

/* Registry key of the state's charge function, kept in a small userdata (a function pointer
 * is not a light userdata in ISO C). Per state, so each sandbox, in any loop context, has its
 * own meter and nothing is process-wide. */
static const char charge_key = 'C';

void lpat_set_charge(lua_State *L, lpat_charge_fn charge)
{
    lpat_charge_fn *slot = lua_newuserdatauv(L, sizeof *slot, 0);
    *slot = charge;
    lua_rawsetp(L, LUA_REGISTRYINDEX, &charge_key);
}

struct capture {
    const char *at;
    ptrdiff_t len; /* bytes, or CAP_OPEN / CAP_POSITION */
};

/* One match in progress: the subject, the pattern's end (items are read up to it, never up to
 * a terminating NUL, so patterns may contain "\0"), the captures made so far, and the meter. */
struct matcher {
    lua_State *L;
    const char *subj;
    const char *subj_end;
    const char *pat_end;
    ptrdiff_t fuel;  /* steps left before the next payment; below 0 means overdrawn */
    int depth_left;  /* recursive calls of match still allowed */
    int ncap;
    struct capture cap[LPAT_MAXCAPTURES];
};

static inline int uc(char c) { return (unsigned char)c; }

/* luaL_error, but known not to return, so the code after a failed check stays simple. */
static _Noreturn void pattern_error(lua_State *L, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    luaL_where(L, 1);
    lua_pushvfstring(L, fmt, ap);
    va_end(ap);
    lua_concat(L, 2);
    lua_error(L);
    abort(); /* not reached: lua_error does not return */
}

/* ---- the meter ----------------------------------------------------------------------------- */

static void charge(lua_State *L, size_t steps)
{
    if (steps == 0) return;
    /* Once per LPAT_CHARGE_EVERY steps, or per call: the lookup is cheap next to the match. */
    lpat_charge_fn charge_fn = NULL;
    if (lua_rawgetp(L, LUA_REGISTRYINDEX, &charge_key) == LUA_TUSERDATA)
        charge_fn = *(lpat_charge_fn *)lua_touserdata(L, -1);
    lua_pop(L, 1);
    if (charge_fn && !charge_fn(L, steps))
        pattern_error(L, "pattern matching exceeded the instruction budget");
}

/* Pays for everything spent since the last payment. The fuel is refilled before the callback
 * runs, so the meter is consistent even when the callback raises. */
static void settle(struct matcher *m)
{
    size_t steps = (size_t)(LPAT_CHARGE_EVERY - m->fuel);
    m->fuel = LPAT_CHARGE_EVERY;
    charge(m->L, steps);
}

/* Hot: one subtraction and one test per step; the callback only every LPAT_CHARGE_EVERY. */
static inline void spend(struct matcher *m, size_t steps)
{
    m->fuel -= (ptrdiff_t)steps;
    if (m->fuel < 0) settle(m);
}

static void matcher_init(struct matcher *m, lua_State *L, const char *s, size_t ls,
                         const char *p, size_t lp)
{
    m->L = L;
    m->subj = s;
    m->subj_end = s + ls;
    m->pat_end = p + lp;
    m->fuel = LPAT_CHARGE_EVERY;
}

/* Every attempt at a new subject position starts with no captures and the full depth. */
static inline void matcher_restart(struct matcher *m)
{
    m->ncap = 0;
    m->depth_left = LPAT_MAXDEPTH;
}

/* ---- single-character classes -------------------------------------------------------------- */

/* Whether byte c belongs to the class named by the letter cl after a '%'. An upper-case letter
 * names the complement; any other character stands for itself (the escape of "%." or "%%").
 * "%z", the NUL byte, left the manual in 5.2 but not Lua 5.4's code, so old patterns using it
 * still work; it is kept for the same answers. Uses <ctype.h> like Lua, so the classes follow
 * the same locale as Lua's. */
static bool class_match(int c, int cl)
{
    int in;
    switch (tolower(cl)) {
    case 'a': in = isalpha(c); break;
    case 'c': in = iscntrl(c); break;
    case 'd': in = isdigit(c); break;
    case 'g': in = isgraph(c); break;
    case 'l': in = islower(c); break;
    case 'p': in = ispunct(c); break;
    case 's': in = isspace(c); break;
    case 'u': in = isupper(c); break;
    case 'w': in = isalnum(c); break;
    case 'x': in = isxdigit(c); break;
    case 'z': in = c == 0; break;
    default: return cl == c;
    }
    return isupper(cl) ? in == 0 : in != 0;
}

/* Whether byte c belongs to the set that opens at p ('[') and closes at close (its ']'). Items
 * are read left to right: "%x" is a class (or an escaped character), "a-z" a range when
 * something other than the closing ']' follows the '-', anything else itself. So "[a-]" holds
 * 'a' and '-', and in "[%a-z]" the '-' is literal, as the manual leaves such mixes undefined
 * and Lua reads them this way. */
static bool set_match(int c, const char *p, const char *close)
{
    bool member = true; /* the answer for a member; false for "[^...]" */
    p++;
    if (*p == '^') {
        member = false;
        p++;
    }
    while (p < close) {
        if (*p == '%') {
            if (class_match(c, uc(p[1]))) return member;
            p += 2;
        } else if (p[1] == '-' && p + 2 < close) {
            if (uc(p[0]) <= c && c <= uc(p[2])) return member;
            p += 3;
        } else {
            if (uc(*p) == c) return member;
            p++;
        }
    }
    return !member;
}

/* The end of the single-character class at p: past "x", "%x", or "[...]". The first character
 * of a set (after an optional '^') is never its end, so "[]]" and "[^]]" are sets holding ']';
 * "%]" inside a set is an escaped ']'. */
static const char *class_end(const struct matcher *m, const char *p)
{
    char c = *p++;
    if (c == '%') {
        if (p == m->pat_end) pattern_error(m->L, "malformed pattern (ends with '%%')");
        return p + 1;
    }
    if (c == '[') {
        if (p < m->pat_end && *p == '^') p++;
        do {
            if (p == m->pat_end) pattern_error(m->L, "malformed pattern (missing ']')");
            if (*p++ == '%' && p < m->pat_end) p++;
        } while (p == m->pat_end || *p != ']');
        return p + 1;
    }
    return p;
}

/* Whether the subject byte at s exists and matches the class p..ep. */
static inline bool class_at(const struct matcher *m, const char *s, const char *p,
                            const char *ep)
{
    if (s >= m->subj_end) return false;
    int c = uc(*s);
    switch (*p) {
    case '.': return true;
    case '%': return class_match(c, uc(p[1]));
    case '[': return set_match(c, p, ep - 1);
    default: return uc(*p) == c;
    }
}

/* ---- the matcher --------------------------------------------------------------------------- */

static const char *match(struct matcher *m, const char *s, const char *p);

/* "x*" and "x+" (after its first x): take as many as possible, then give back one at a time
 * until the rest of the pattern (after ep's quantifier) matches. */
static const char *match_greedy(struct matcher *m, const char *s, const char *p, const char *ep)
{
    size_t n = 0;
    if (*p == '.') {
        n = (size_t)(m->subj_end - s);
    } else {
        while (class_at(m, s + n, p, ep)) n++;
    }
    spend(m, n);
    for (;;) {
        const char *end = match(m, s + n, ep + 1);
        if (end) return end;
        if (n == 0) return NULL;
        n--;
    }
}

/* "x-": try the rest of the pattern first, taking one more x each time it fails. */
static const char *match_lazy(struct matcher *m, const char *s, const char *p, const char *ep)
{
    for (;;) {
        const char *end = match(m, s, ep + 1);
        if (end) return end;
        if (!class_at(m, s, p, ep)) return NULL;
        s++;
    }
}

/* "%bxy" at s, with p at x: x, then text in which x and y balance, then the y that closes. */
static const char *match_balance(struct matcher *m, const char *s, const char *p)
{
    if (p + 1 >= m->pat_end) pattern_error(m->L, "malformed pattern (missing arguments to '%%b')");
    if (s >= m->subj_end || *s != p[0]) return NULL;
    char open = p[0], close = p[1];
    const char *start = s;
    size_t depth = 1;
    while (++s < m->subj_end) {
        if (*s == close) {
            if (--depth == 0) break;
        } else if (*s == open) {
            depth++;
        }
    }
    spend(m, (size_t)(s - start));
    return s < m->subj_end ? s + 1 : NULL;
}

/* "%1".."%9": the text of an earlier, closed capture again. A position capture has no text, so
 * a reference to one never matches. */
static const char *match_backref(struct matcher *m, const char *s, int digit)
{
    int i = digit - '1';
    if (i < 0 || i >= m->ncap || m->cap[i].len == CAP_OPEN)
        pattern_error(m->L, "invalid capture index %%%d", i + 1);
    ptrdiff_t len = m->cap[i].len;
    if (len == CAP_POSITION || m->subj_end - s < len) return NULL;
    spend(m, (size_t)len);
    return memcmp(m->cap[i].at, s, (size_t)len) == 0 ? s + len : NULL;
}

/* "(" (or "()" with kind CAP_POSITION) at s, the rest of the pattern from p. */
static const char *match_open(struct matcher *m, const char *s, const char *p, ptrdiff_t kind)
{
    if (m->ncap >= LPAT_MAXCAPTURES) pattern_error(m->L, "too many captures");
    m->cap[m->ncap].at = s;
    m->cap[m->ncap].len = kind;
    m->ncap++;
    const char *end = match(m, s, p);
    if (!end) m->ncap--;
    return end;
}

/* ")" at s closes the innermost capture still open. */
static const char *match_close(struct matcher *m, const char *s, const char *p)
{
    int i = m->ncap - 1;
    while (i >= 0 && m->cap[i].len != CAP_OPEN) i--;
    if (i < 0) pattern_error(m->L, "invalid pattern capture");
    m->cap[i].len = s - m->cap[i].at;
    const char *end = match(m, s, p);
    if (!end) m->cap[i].len = CAP_OPEN;
    return end;
}

/* Matches the pattern from p against the subject from s; returns the end of the match or NULL.
 * Items that need no backtracking (a plain class, anchors, %b, %f, back-references) advance in
 * the loop; captures and quantifiers recurse for the rest of the pattern. Lua bounds the same
 * recursion at the same points, so "pattern too complex" comes at the same depth. */
static const char *match(struct matcher *m, const char *s, const char *p)
{
    if (m->depth_left == 0) pattern_error(m->L, "pattern too complex");
    m->depth_left--;
    for (;;) {
        spend(m, 1);
        if (p == m->pat_end) break;
        switch (*p) {
        case '(':
            if (p + 1 < m->pat_end && p[1] == ')')
                s = match_open(m, s, p + 2, CAP_POSITION);
            else
                s = match_open(m, s, p + 1, CAP_OPEN);
            goto out;
        case ')':
            s = match_close(m, s, p + 1);
            goto out;
        case '$':
            if (p + 1 == m->pat_end) { /* an anchor only at the very end */
                if (s != m->subj_end) s = NULL;
                goto out;
            }
            break;
        case '%':
            if (p + 1 == m->pat_end) break; /* class_end reports it */
            switch (p[1]) {
            case 'b':
                s = match_balance(m, s, p + 2);
                if (!s) goto out;
                p += 4;
                continue;
            case 'f': {
                p += 2;
                if (p == m->pat_end || *p != '[')
                    pattern_error(m->L, "missing '[' after '%%f' in pattern");
                const char *ep = class_end(m, p);
                int before = s == m->subj ? 0 : uc(s[-1]);
                int here = s < m->subj_end ? uc(*s) : 0; /* the end counts as "\0" */
                if (set_match(before, p, ep - 1) || !set_match(here, p, ep - 1)) {
                    s = NULL;
                    goto out;
                }
                p = ep;
                continue;
            }
            case '0': case '1': case '2': case '3': case '4':
            case '5': case '6': case '7': case '8': case '9':
                s = match_backref(m, s, uc(p[1]));
                if (!s) goto out;
                p += 2;
                continue;
            default:
                break;
            }
            break;
        default:
            break;
        }

        /* A single-character class, perhaps with a quantifier. */
        const char *ep = class_end(m, p);
        char q = ep < m->pat_end ? *ep : '\0';
        if (!class_at(m, s, p, ep)) {
            if (q == '*' || q == '?' || q == '-') { /* zero of them will do */
                p = ep + 1;
                continue;
            }
            s = NULL;
            goto out;
        }
        switch (q) {
        case '?': {
            const char *end = match(m, s + 1, ep + 1);
            if (end) {
                s = end;
                goto out;
            }
            p = ep + 1;
            continue;
        }
        case '+':
            s = match_greedy(m, s + 1, p, ep);
            goto out;
        case '*':
            s = match_greedy(m, s, p, ep);
            goto out;
        case '-':
            s = match_lazy(m, s, p, ep);
            goto out;
        default:
            s++;
            p = ep;
            continue;
        }
    }
out:
    m->depth_left++;
    return s;
}

/* ---- results ------------------------------------------------------------------------------- */

/* Pushes capture i of the match s..e. Without captures, "capture 1" is the whole match (the
 * callers ask for no other missing capture). */
static void push_capture(const struct matcher *m, int i, const char *s, const char *e)
{
    if (i >= m->ncap) {
        lua_pushlstring(m->L, s, (size_t)(e - s));
        return;
    }
    const struct capture *c = &m->cap[i];
    if (c->len == CAP_OPEN) pattern_error(m->L, "unfinished capture");
    if (c->len == CAP_POSITION)
        lua_pushinteger(m->L, (lua_Integer)(c->at - m->subj) + 1);
    else
        lua_pushlstring(m->L, c->at, (size_t)c->len);
}

/* Pushes every capture, or the whole match when there are none and whole is true (find wants
 * nothing then: it has already pushed the indices). Returns the number pushed. */
static int push_captures(const struct matcher *m, const char *s, const char *e, bool whole)
{
    int n = m->ncap == 0 && whole ? 1 : m->ncap;
    luaL_checkstack(m->L, n, "too many captures");
    for (int i = 0; i < n; i++) push_capture(m, i, s, e);
    return n;
}

/* ---- find and match ------------------------------------------------------------------------ */

/* A 1-based, possibly negative init as an offset: past the start counts as the start; the
 * caller fails when the offset is past the end + 1. */
static size_t start_offset(lua_Integer init, size_t len)
{
    if (init > 0) return (size_t)init - 1;
    if (init == 0 || init < -(lua_Integer)len) return 0;
    return len - (size_t)-init;
}

/* Whether find may search for the pattern as plain text: none of its bytes is magic where a
 * pattern starts. (']' and ')' alone need no pattern machinery, so they do not count.) */
static bool is_plain(const char *p, size_t lp)
{
    for (size_t i = 0; i < lp; i++) {
        switch (p[i]) {
        case '^': case '$': case '*': case '+': case '?':
        case '.': case '(': case '[': case '%': case '-':
            return false;
        default:
            break;
        }
    }
    return true;
}

/* The first occurrence of n[0..nl) in h[0..hl), or NULL. Like Lua, memchr finds candidates
 * for the first byte and memcmp checks the rest, which is fastest for ordinary text. But that is
 * quadratic when the needle nearly matches everywhere ("aaa...ab" in "aaa..."), so once the
 * comparisons have cost more than a pass over the subject, memmem (linear in glibc and musl)
 * takes over. *work gets the bytes looked at: scanned, plus the most each comparison could read. */
static const char *plain_search(const char *h, size_t hl, const char *n, size_t nl, size_t *work)
{
    *work = 0;
    if (nl == 0) return h;
    if (nl > hl) return NULL;
    const char *at = h, *last = h + (hl - nl); /* the last place the needle fits */
    size_t compared = 0;
    for (;;) {
        at = memchr(at, n[0], (size_t)(last - at) + 1);
        if (!at) {
            *work = hl + compared;
            return NULL;
        }
        if (memcmp(at + 1, n + 1, nl - 1) == 0) {
            *work = (size_t)(at - h) + nl + compared;
            return at;
        }
        compared += nl - 1;
        if (at == last) {
            *work = hl + compared;
            return NULL;
        }
        at++;
        if (compared > hl) {
            const char *hit = memmem(at, (size_t)(h + hl - at), n, nl);
            *work = (hit ? (size_t)(hit - h) + nl : hl) + compared;
            return hit;
        }
    }
}

/* find with plain text, charged by the bytes it looked at. */
static int find_plain(lua_State *L, const char *s, size_t ls, size_t init, const char *p,
                      size_t lp)
{
    size_t work;
    const char *hit = plain_search(s + init, ls - init, p, lp, &work);
    charge(L, work + 1);
    if (!hit) {
        luaL_pushfail(L);
        return 1;
    }
    lua_pushinteger(L, (lua_Integer)(hit - s) + 1);
    lua_pushinteger(L, (lua_Integer)(hit - s) + (lua_Integer)lp);
    return 2;
}

static int find_or_match(lua_State *L, bool find)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = start_offset(luaL_optinteger(L, 3, 1), ls);
    if (init > ls) {
        luaL_pushfail(L);
        return 1;
    }
    if (find && (lua_toboolean(L, 4) || is_plain(p, lp))) return find_plain(L, s, ls, init, p, lp);

    bool anchored = lp > 0 && *p == '^';
    if (anchored) {
        p++;
        lp--;
    }
    struct matcher m;
    matcher_init(&m, L, s, ls, p, lp);
    const char *at = s + init;
    for (;;) {
        matcher_restart(&m);
        const char *end = match(&m, at, p);
        if (end) {
            int n = 0;
            if (find) {
                lua_pushinteger(L, (lua_Integer)(at - s) + 1);
                lua_pushinteger(L, (lua_Integer)(end - s));
                n = 2;
            }
            n += push_captures(&m, at, end, !find);
            settle(&m);
            return n;
        }
        if (anchored || at == m.subj_end) break;
        at++;
    }
    settle(&m);
    luaL_pushfail(L);
    return 1;
}

int lpat_find(lua_State *L) { return find_or_match(L, true); }

int lpat_match(lua_State *L) { return find_or_match(L, false); }

/* ---- gmatch -------------------------------------------------------------------------------- */

/* The iterator's state, a userdata next to the subject and pattern it points into (all three are
 * upvalues of the iterator, so the strings live as long as the pointers). */
struct gmatch_state {
    struct matcher m;
    const char *pat;
    size_t next;      /* offset where the next search starts; past the end when exhausted */
    const char *last; /* end of the previous match: an empty match there does not count */
};

static int gmatch_next(lua_State *L)
{
    struct gmatch_state *g = lua_touserdata(L, lua_upvalueindex(3));
    struct matcher *m = &g->m;
    m->L = L; /* the iterator may run on another coroutine than the one that made it */
    size_t len = (size_t)(m->subj_end - m->subj);
    for (size_t i = g->next; i <= len; i++) {
        const char *at = m->subj + i;
        matcher_restart(m);
        const char *end = match(m, at, g->pat);
        if (end && end != g->last) {
            g->last = end;
            g->next = (size_t)(end - m->subj);
            int n = push_captures(m, at, end, true);
            settle(m);
            return n;
        }
    }
    g->next = len + 1;
    settle(m);
    return 0;
}

/* A '^' in gmatch is an ordinary character: anchoring would stop the iteration after one. */
int lpat_gmatch(lua_State *L)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    size_t init = start_offset(luaL_optinteger(L, 3, 1), ls);
    lua_settop(L, 2);
    struct gmatch_state *g = lua_newuserdatauv(L, sizeof *g, 0);
    matcher_init(&g->m, L, s, ls, p, lp);
    g->pat = p;
    g->next = init > ls ? ls + 1 : init;
    g->last = NULL;
    lua_pushcclosure(L, gmatch_next, 3);
    return 1;
}

/* ---- gsub ---------------------------------------------------------------------------------- */

/* Adds the text of capture i ("%1".."%9" in a replacement string) to b. */
static void add_capture(struct matcher *m, luaL_Buffer *b, int i, const char *s, const char *e)
{
    if (i < m->ncap && m->cap[i].len == CAP_POSITION) {
        lua_pushinteger(m->L, (lua_Integer)(m->cap[i].at - m->subj) + 1);
        luaL_addvalue(b);
        return;
    }
    if (i >= m->ncap) {
        if (i != 0) pattern_error(m->L, "invalid capture index %%%d", i + 1);
        luaL_addlstring(b, s, (size_t)(e - s));
        return;
    }
    if (m->cap[i].len == CAP_OPEN) pattern_error(m->L, "unfinished capture");
    luaL_addlstring(b, m->cap[i].at, (size_t)m->cap[i].len);
}

/* Adds the replacement string r for the match s..e, with its "%" escapes expanded. Escapes are
 * checked at each use, not once: a bad one is an error only when something matched. */
static void add_template(struct matcher *m, luaL_Buffer *b, const char *s, const char *e,
                         const char *r, size_t lr)
{
    const char *end = r + lr;
    const char *pct;
    while ((pct = memchr(r, '%', (size_t)(end - r))) != NULL) {
        luaL_addlstring(b, r, (size_t)(pct - r));
        spend(m, 1);
        char c = pct + 1 < end ? pct[1] : '\0';
        if (c == '%')
            luaL_addchar(b, '%');
        else if (c == '0')
            luaL_addlstring(b, s, (size_t)(e - s));
        else if (c >= '1' && c <= '9')
            add_capture(m, b, c - '1', s, e);
        else
            pattern_error(m->L, "invalid use of '%%' in replacement string");
        r = pct + 2;
    }
    luaL_addlstring(b, r, (size_t)(end - r));
}

/* Adds the replacement for the match s..e taken from the table or function at index 3: false or
 * nil keeps the match. Returns whether the text changed. */
static bool add_looked_up(struct matcher *m, luaL_Buffer *b, const char *s, const char *e,
                          int type)
{
    lua_State *L = m->L;
    if (type == LUA_TFUNCTION) {
        lua_pushvalue(L, 3);
        int n = push_captures(m, s, e, true);
        lua_call(L, n, 1);
    } else {
        push_capture(m, 0, s, e);
        lua_gettable(L, 3);
    }
    if (!lua_toboolean(L, -1)) {
        lua_pop(L, 1);
        luaL_addlstring(b, s, (size_t)(e - s));
        return false;
    }
    if (!lua_isstring(L, -1))
        pattern_error(L, "invalid replacement value (a %s)", luaL_typename(L, -1));
    luaL_addvalue(b);
    return true;
}

int lpat_gsub(lua_State *L)
{
    size_t ls, lp;
    const char *s = luaL_checklstring(L, 1, &ls);
    const char *p = luaL_checklstring(L, 2, &lp);
    int type = lua_type(L, 3);
    lua_Integer max = luaL_optinteger(L, 4, (lua_Integer)ls + 1);
    luaL_argexpected(L, type == LUA_TNUMBER || type == LUA_TSTRING || type == LUA_TFUNCTION ||
                     type == LUA_TTABLE, 3, "string/function/table");
    size_t lr = 0;
    const char *r = type == LUA_TNUMBER || type == LUA_TSTRING ? lua_tolstring(L, 3, &lr) : NULL;

    bool anchored = lp > 0 && *p == '^';
    if (anchored) {
        p++;
        lp--;
    }
    luaL_Buffer b;
    luaL_buffinit(L, &b);
    struct matcher m;
    matcher_init(&m, L, s, ls, p, lp);
    const char *at = s, *last = NULL;
    lua_Integer count = 0;
    bool changed = false;
    while (count < max) {
        matcher_restart(&m);
        const char *end = match(&m, at, p);
        if (end && end != last) { /* an empty match right after the previous one is skipped */
            count++;
            if (r) {
                add_template(&m, &b, at, end, r, lr);
                changed = true;
            } else if (add_looked_up(&m, &b, at, end, type)) {
                changed = true;
            }
            at = last = end;
        } else if (at < m.subj_end) {
            luaL_addchar(&b, *at++);
        } else {
            break;
        }
        if (anchored) break;
    }
    if (changed) {
        luaL_addlstring(&b, at, (size_t)(m.subj_end - at));
        luaL_pushresult(&b);
    } else {
        lua_pushvalue(L, 1); /* nothing replaced: the very same string */
    }
    settle(&m);
    lua_pushinteger(L, count);
    return 2;
}

/* ---- registration -------------------------------------------------------------------------- */

void lpat_install(lua_State *L)
{
    static const luaL_Reg funcs[] = {
        { "find", lpat_find },
        { "match", lpat_match },
        { "gmatch", lpat_gmatch },
        { "gsub", lpat_gsub },
        { NULL, NULL },
    };
    luaL_setfuncs(L, funcs, 0);
}
