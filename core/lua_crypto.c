/* mw.crypto, mw.base64, mw.hex and mw.jwt: digests, HMAC, random bytes and constant-time
 * comparison from OpenSSL; strict base64 and hex (codec.c); JSON Web Tokens verified (and signed,
 * for tests and tools) with HS256/384/512, RS256/384/512, ES256/384/512 and EdDSA (Ed25519).
 *
 * Every input is bounded: tokens and PEM keys up to 16 KiB, random(n) up to 1 MiB; digests and
 * codecs are linear in a string the memory cap already bounds. Expected failures (bad base64,
 * a token that does not verify) return nil and a reason; misuse (wrong argument types, an
 * algorithm list with "none") raises. OpenSSL objects are freed before anything that can raise,
 * except parsed keys, which live in userdata with __gc (STYLE 14). */
#include <math.h>
#include <string.h>
#include <time.h>

#include <lauxlib.h>
#include <lua.h>
#include <openssl/bn.h>
#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/ec.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rand.h>

#include "codec.h"
#include "lua_app.h"

#define CRYPTO_MAX_RANDOM (1024 * 1024)
#define JWT_MAX_TOKEN (16 * 1024)
#define JWT_MAX_KEY (16 * 1024)
#define JWT_MAX_SIG 2048 /* a 16384-bit RSA signature */
#define RSA_MIN_BITS 2048

/* ---- digests and HMAC ---------------------------------------------------------------------- */

static const EVP_MD *md_named(const char *name)
{
    if (strcmp(name, "sha1") == 0) return EVP_sha1();
    if (strcmp(name, "sha256") == 0) return EVP_sha256();
    if (strcmp(name, "sha384") == 0) return EVP_sha384();
    if (strcmp(name, "sha512") == 0) return EVP_sha512();
    return NULL;
}

/* mw.crypto.sha1/sha256/sha384/sha512(s) -> the raw digest. Upvalue 1: the name. */
static int crypto_digest(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    const EVP_MD *md = md_named(lua_tostring(L, lua_upvalueindex(1)));
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!EVP_Digest(s, len, out, &n, md, NULL)) return luaL_error(L, "mw.crypto: digest failed");
    lua_pushlstring(L, (const char *)out, n);
    return 1;
}

/* mw.crypto.hmac(alg, key, s) -> the raw MAC. */
static int crypto_hmac(lua_State *L)
{
    const char *alg = luaL_checkstring(L, 1);
    size_t klen, len;
    const char *key = luaL_checklstring(L, 2, &klen);
    const char *s = luaL_checklstring(L, 3, &len);
    const EVP_MD *md = md_named(alg);
    if (!md)
        return luaL_error(L, "mw.crypto.hmac: unknown algorithm '%s' (sha1, sha256, sha384 or "
                             "sha512)", alg);
    unsigned char out[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (!HMAC(md, key, (int)klen, (const unsigned char *)s, len, out, &n))
        return luaL_error(L, "mw.crypto.hmac: failed");
    lua_pushlstring(L, (const char *)out, n);
    return 1;
}

/* mw.crypto.random(n) -> n bytes from the OS's generator (through OpenSSL's DRBG). */
static int crypto_random(lua_State *L)
{
    lua_Integer n = luaL_checkinteger(L, 1);
    luaL_argcheck(L, n >= 0 && n <= CRYPTO_MAX_RANDOM, 1, "0 to 1048576 bytes");
    luaL_Buffer b;
    unsigned char *p = (unsigned char *)luaL_buffinitsize(L, &b, (size_t)n);
    if (n > 0 && RAND_bytes(p, (int)n) != 1)
        return luaL_error(L, "mw.crypto.random: the generator failed");
    luaL_pushresultsize(&b, (size_t)n);
    return 1;
}

/* mw.crypto.equal(a, b) -> whether the strings are equal, in time that depends only on their
 * lengths (for comparing MACs and tokens). */
static int crypto_equal(lua_State *L)
{
    size_t alen, blen;
    const char *a = luaL_checklstring(L, 1, &alen);
    const char *b = luaL_checklstring(L, 2, &blen);
    lua_pushboolean(L, alen == blen && CRYPTO_memcmp(a, b, alen) == 0);
    return 1;
}

/* ---- base64 and hex ------------------------------------------------------------------------ */

/* mw.base64.encode(s [, url]) */
static int base64_encode(lua_State *L)
{
    size_t len;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
    bool url = lua_toboolean(L, 2);
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, codec_b64_encoded_len(len, url));
    luaL_pushresultsize(&b, codec_b64_encode(s, len, p, url));
    return 1;
}

/* mw.base64.decode(s [, url]) -> bytes | nil, "invalid base64" */
static int base64_decode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    bool url = lua_toboolean(L, 2);
    luaL_Buffer b;
    unsigned char *p = (unsigned char *)luaL_buffinitsize(L, &b, codec_b64_decoded_max(len));
    size_t n = codec_b64_decode(s, len, p, url, true);
    if (n == CODEC_INVALID) {
        luaL_pushfail(L);
        lua_pushliteral(L, "invalid base64");
        return 2;
    }
    luaL_pushresultsize(&b, n);
    return 1;
}

/* mw.hex.encode(s) -> lower-case hex */
static int hex_encode(lua_State *L)
{
    size_t len;
    const unsigned char *s = (const unsigned char *)luaL_checklstring(L, 1, &len);
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, len * 2);
    codec_hex_encode(s, len, p);
    luaL_pushresultsize(&b, len * 2);
    return 1;
}

/* mw.hex.decode(s) -> bytes | nil, "invalid hex" (either case; an even number of digits) */
static int hex_decode(lua_State *L)
{
    size_t len;
    const char *s = luaL_checklstring(L, 1, &len);
    luaL_Buffer b;
    unsigned char *p = (unsigned char *)luaL_buffinitsize(L, &b, len / 2);
    size_t n = codec_hex_decode(s, len, p);
    if (n == CODEC_INVALID) {
        luaL_pushfail(L);
        lua_pushliteral(L, "invalid hex");
        return 2;
    }
    luaL_pushresultsize(&b, n);
    return 1;
}

/* ---- keys ---------------------------------------------------------------------------------- */

/* A parsed PEM key, owned by a userdata so that an error anywhere cannot leak it. Parsed keys
 * are cached per PEM text: OpenSSL 3 takes about 2 ms to parse a public key (its decoder
 * lookup), a hundred RSA-2048 verifications. The cache holds at most KEY_CACHE_MAX keys and is
 * emptied when full, so an app cycling through many keys pays the parse but cannot grow the
 * memory outside its Lua heap (OpenSSL's) without bound. */
static const char key_meta[] = "moonwire.crypto.key";
static const char key_cache_key = 0; /* registry: { [pem .. "\1public"] = key userdata, [0] = n } */
#define KEY_CACHE_MAX 64

struct crypto_key {
    EVP_PKEY *pkey;
};

static int key_gc(lua_State *L)
{
    struct crypto_key *k = luaL_checkudata(L, 1, key_meta);
    EVP_PKEY_free(k->pkey);
    k->pkey = NULL;
    return 0;
}

/* An encrypted private key is refused rather than asked about on the terminal. */
static int no_password(char *buf, int size, int rwflag, void *u)
{
    (void)buf, (void)size, (void)rwflag, (void)u;
    return -1;
}

static bool is_pem(const char *s, size_t len)
{
    return len >= 10 && memcmp(s, "-----BEGIN", 10) == 0;
}

/* The EVP_PKEY for a PEM text (a public key, or a private one when private is set), parsed
 * once and then cached; its userdata is left on the stack, anchoring it. NULL (with nil pushed)
 * when the text is not such a key. */
static EVP_PKEY *pem_key(lua_State *L, const char *pem, size_t len, bool private)
{
    if (len > JWT_MAX_KEY) {
        lua_pushnil(L);
        return NULL;
    }
    lua_rawgetp(L, LUA_REGISTRYINDEX, &key_cache_key);
    int cache = lua_gettop(L);
    lua_pushlstring(L, pem, len);
    lua_pushstring(L, private ? "\1private" : "\1public");
    lua_concat(L, 2);
    int name = lua_gettop(L);
    lua_pushvalue(L, name);
    if (lua_rawget(L, cache) == LUA_TUSERDATA) {
        struct crypto_key *k = lua_touserdata(L, -1);
        lua_replace(L, cache);
        lua_settop(L, cache);
        return k->pkey;
    }
    lua_pop(L, 1);
    lua_rawgeti(L, cache, 0);
    lua_Integer cached = lua_tointeger(L, -1);
    lua_pop(L, 1);
    if (cached >= KEY_CACHE_MAX) { /* start afresh; the old keys go with the old table */
        lua_newtable(L);
        lua_pushvalue(L, -1);
        lua_rawsetp(L, LUA_REGISTRYINDEX, &key_cache_key);
        lua_replace(L, cache);
        cached = 0;
    }
    struct crypto_key *k = lua_newuserdatauv(L, sizeof *k, 0);
    k->pkey = NULL;
    luaL_setmetatable(L, key_meta);
    BIO *bio = BIO_new_mem_buf(pem, (int)len);
    if (bio) {
        k->pkey = private ? PEM_read_bio_PrivateKey(bio, NULL, no_password, NULL)
                          : PEM_read_bio_PUBKEY(bio, NULL, no_password, NULL);
        BIO_free(bio);
    }
    if (!k->pkey) {
        ERR_clear_error(); /* leave nothing for tls.c to find on this thread's queue */
        lua_settop(L, cache - 1);
        lua_pushnil(L);
        return NULL;
    }
    lua_pushvalue(L, name);
    lua_pushvalue(L, -2);
    lua_rawset(L, cache);
    lua_pushinteger(L, cached + 1);
    lua_rawseti(L, cache, 0);
    lua_replace(L, cache);
    lua_settop(L, cache);
    return k->pkey;
}

/* ---- JWT algorithms ------------------------------------------------------------------------ */

enum jwt_kind { JWT_HMAC, JWT_RSA, JWT_EC, JWT_ED };

struct jwt_alg {
    const char *name;
    enum jwt_kind kind;
    const char *md;      /* digest name; NULL for EdDSA */
    const char *curve;   /* EC group name */
    size_t coord;        /* bytes of r and of s in the JWS signature (EC) */
};

static const struct jwt_alg jwt_algs[] = {
    { "HS256", JWT_HMAC, "sha256", NULL, 0 },
    { "HS384", JWT_HMAC, "sha384", NULL, 0 },
    { "HS512", JWT_HMAC, "sha512", NULL, 0 },
    { "RS256", JWT_RSA, "sha256", NULL, 0 },
    { "RS384", JWT_RSA, "sha384", NULL, 0 },
    { "RS512", JWT_RSA, "sha512", NULL, 0 },
    { "ES256", JWT_EC, "sha256", "prime256v1", 32 },
    { "ES384", JWT_EC, "sha384", "secp384r1", 48 },
    { "ES512", JWT_EC, "sha512", "secp521r1", 66 },
    { "EdDSA", JWT_ED, NULL, NULL, 0 },
};

static const struct jwt_alg *jwt_alg_named(const char *name)
{
    for (size_t i = 0; i < sizeof jwt_algs / sizeof jwt_algs[0]; i++)
        if (strcmp(jwt_algs[i].name, name) == 0) return &jwt_algs[i];
    return NULL;
}

/* Whether pkey is the kind of key alg needs: the classic confusions (an RSA key for ES256, a
 * P-384 key for ES256, a short RSA key) are refused here, before any signature is looked at. */
static bool key_fits(const struct jwt_alg *alg, EVP_PKEY *pkey)
{
    switch (alg->kind) {
    case JWT_RSA:
        return EVP_PKEY_get_base_id(pkey) == EVP_PKEY_RSA &&
               EVP_PKEY_get_bits(pkey) >= RSA_MIN_BITS;
    case JWT_EC: {
        char group[64];
        size_t glen = 0;
        return EVP_PKEY_get_base_id(pkey) == EVP_PKEY_EC &&
               EVP_PKEY_get_utf8_string_param(pkey, OSSL_PKEY_PARAM_GROUP_NAME, group,
                                              sizeof group, &glen) &&
               strcmp(group, alg->curve) == 0;
    }
    case JWT_ED:
        return EVP_PKEY_get_base_id(pkey) == EVP_PKEY_ED25519;
    case JWT_HMAC:
        break;
    }
    return false;
}

/* Verifies sig over data with a public key. Returns 1 (valid), 0 (not). Allocates nothing
 * that outlives it and calls nothing that raises. */
static int pkey_verify(const struct jwt_alg *alg, EVP_PKEY *pkey, const unsigned char *data,
                       size_t len, const unsigned char *sig, size_t siglen)
{
    unsigned char *der = NULL;
    int derlen = 0;
    if (alg->kind == JWT_EC) {
        /* JWS carries r || s, fixed width; OpenSSL wants DER. */
        if (siglen != 2 * alg->coord) return 0;
        ECDSA_SIG *es = ECDSA_SIG_new();
        BIGNUM *r = BN_bin2bn(sig, (int)alg->coord, NULL);
        BIGNUM *s = BN_bin2bn(sig + alg->coord, (int)alg->coord, NULL);
        if (!es || !r || !s || !ECDSA_SIG_set0(es, r, s)) {
            BN_free(r);
            BN_free(s);
            ECDSA_SIG_free(es);
            return 0;
        }
        derlen = i2d_ECDSA_SIG(es, &der);
        ECDSA_SIG_free(es);
        if (derlen <= 0) return 0;
        sig = der;
        siglen = (size_t)derlen;
    }
    int ok = 0;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (ctx && EVP_DigestVerifyInit_ex(ctx, NULL, alg->md, NULL, NULL, pkey, NULL) == 1)
        ok = EVP_DigestVerify(ctx, sig, siglen, data, len) == 1;
    EVP_MD_CTX_free(ctx);
    OPENSSL_free(der);
    ERR_clear_error(); /* a bad signature can leave an error queued */
    return ok;
}

/* Signs data with a private key into out (JWT_MAX_SIG bytes). Returns the length, or 0. */
static size_t pkey_sign(const struct jwt_alg *alg, EVP_PKEY *pkey, const unsigned char *data,
                        size_t len, unsigned char *out)
{
    size_t n = 0;
    unsigned char *der = NULL;
    EVP_MD_CTX *ctx = EVP_MD_CTX_new();
    if (!ctx || EVP_DigestSignInit_ex(ctx, NULL, alg->md, NULL, NULL, pkey, NULL) != 1 ||
        EVP_DigestSign(ctx, NULL, &n, data, len) != 1 || n > JWT_MAX_SIG ||
        !(der = OPENSSL_malloc(n)) || EVP_DigestSign(ctx, der, &n, data, len) != 1) {
        n = 0;
    }
    EVP_MD_CTX_free(ctx);
    if (n && alg->kind == JWT_EC) {
        const unsigned char *p = der;
        ECDSA_SIG *es = d2i_ECDSA_SIG(NULL, &p, (long)n);
        n = 0;
        if (es && BN_bn2binpad(ECDSA_SIG_get0_r(es), out, (int)alg->coord) > 0 &&
            BN_bn2binpad(ECDSA_SIG_get0_s(es), out + alg->coord, (int)alg->coord) > 0)
            n = 2 * alg->coord;
        ECDSA_SIG_free(es);
    } else if (n) {
        memcpy(out, der, n);
    }
    OPENSSL_free(der);
    ERR_clear_error();
    return n;
}

/* ---- mw.jwt.verify ------------------------------------------------------------------------- */

static int fail(lua_State *L, const char *reason)
{
    luaL_pushfail(L);
    lua_pushstring(L, reason);
    return 2;
}

/* Decodes a base64url JSON object (one part of the token) with mw.json.decode (upvalue 1) and
 * pushes it; false (nothing pushed) when it is not one. */
static bool push_json_part(lua_State *L, const char *s, size_t len)
{
    luaL_Buffer b;
    unsigned char *p = (unsigned char *)luaL_buffinitsize(L, &b, codec_b64_decoded_max(len));
    size_t n = codec_b64_decode(s, len, p, true, false);
    if (n == CODEC_INVALID) {
        luaL_pushresultsize(&b, 0);
        lua_pop(L, 1);
        return false;
    }
    luaL_pushresultsize(&b, n);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, -2);
    lua_call(L, 1, 1); /* nil, message for bad JSON; raises only for memory */
    if (lua_type(L, -1) != LUA_TTABLE) {
        lua_pop(L, 1); /* nil (not JSON), or JSON that is not an object */
        return false;
    }
    return true;
}

/* Whether the list at idx (a string, or an array of strings) holds a string equal to s. */
static bool list_has(lua_State *L, int idx, const char *s)
{
    if (lua_type(L, idx) == LUA_TSTRING) return strcmp(lua_tostring(L, idx), s) == 0;
    if (lua_type(L, idx) != LUA_TTABLE) return false;
    lua_Integer n = (lua_Integer)lua_rawlen(L, idx);
    for (lua_Integer i = 1; i <= n; i++) {
        bool hit = lua_rawgeti(L, idx, i) == LUA_TSTRING && strcmp(lua_tostring(L, -1), s) == 0;
        lua_pop(L, 1);
        if (hit) return true;
    }
    return false;
}

/* Whether any string of the token's aud (a string or array at tok) is in the wanted list (a
 * string or array at want). */
static bool audience_matches(lua_State *L, int tok, int want)
{
    if (lua_type(L, tok) == LUA_TSTRING) return list_has(L, want, lua_tostring(L, tok));
    if (lua_type(L, tok) != LUA_TTABLE) return false;
    lua_Integer n = (lua_Integer)lua_rawlen(L, tok);
    for (lua_Integer i = 1; i <= n; i++) {
        bool hit = lua_rawgeti(L, tok, i) == LUA_TSTRING && list_has(L, want, lua_tostring(L, -1));
        lua_pop(L, 1);
        if (hit) return true;
    }
    return false;
}

static double wall_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* A time claim (exp, nbf) of the claims at idx: 1 and *t when present and a number, 0 when
 * absent, -1 when present but not a number. */
static int time_claim(lua_State *L, int idx, const char *name, double *t)
{
    int type = lua_getfield(L, idx, name);
    *t = lua_tonumber(L, -1);
    lua_pop(L, 1);
    if (type == LUA_TNIL) return 0;
    return type == LUA_TNUMBER && !isnan(*t) ? 1 : -1;
}

/* Reads opts.algorithms (index 2 is opts) into the set `allowed`; raises on misuse. */
static void check_algorithms(lua_State *L, bool allowed[])
{
    if (lua_getfield(L, 2, "algorithms") != LUA_TTABLE || lua_rawlen(L, -1) == 0)
        luaL_error(L, "mw.jwt.verify: opts.algorithms must list the algorithms to accept, like "
                      "{ \"HS256\" }");
    lua_Integer n = (lua_Integer)lua_rawlen(L, -1);
    for (lua_Integer i = 1; i <= n; i++) {
        if (lua_rawgeti(L, -1, i) != LUA_TSTRING)
            luaL_error(L, "mw.jwt.verify: opts.algorithms holds strings");
        const char *name = lua_tostring(L, -1);
        const struct jwt_alg *alg = jwt_alg_named(name);
        if (!alg)
            luaL_error(L, "mw.jwt.verify: unknown algorithm '%s' (\"none\" is never accepted)",
                       name);
        allowed[alg - jwt_algs] = true;
        lua_pop(L, 1);
    }
    lua_pop(L, 1);
}

/* mw.jwt.verify(token, opts) -> claims, header | nil, reason */
static int jwt_verify(lua_State *L)
{
    size_t tlen = 0;
    if (!lua_isnoneornil(L, 1)) luaL_checktype(L, 1, LUA_TSTRING);
    const char *token = lua_tolstring(L, 1, &tlen);
    luaL_checktype(L, 2, LUA_TTABLE);
    bool allowed[sizeof jwt_algs / sizeof jwt_algs[0]] = { false };
    check_algorithms(L, allowed);
    int keys_type = lua_getfield(L, 2, "keys");
    if (keys_type != LUA_TSTRING && keys_type != LUA_TTABLE)
        return luaL_error(L, "mw.jwt.verify: opts.keys must be a key (a secret or a PEM public "
                             "key) or a table of keys by kid");
    int keys = lua_gettop(L);
    double leeway = 0;
    if (lua_getfield(L, 2, "leeway") != LUA_TNIL) {
        int isnum;
        leeway = lua_tonumberx(L, -1, &isnum);
        if (!isnum || !(leeway >= 0)) return luaL_error(L, "mw.jwt.verify: opts.leeway is seconds");
    }
    lua_pop(L, 1);
    int issuer_type = lua_getfield(L, 2, "issuer");
    int issuer = lua_gettop(L);
    int audience_type = lua_getfield(L, 2, "audience");
    int audience = lua_gettop(L);
    if ((issuer_type != LUA_TNIL && issuer_type != LUA_TSTRING) ||
        (audience_type != LUA_TNIL && audience_type != LUA_TSTRING && audience_type != LUA_TTABLE))
        return luaL_error(L, "mw.jwt.verify: opts.issuer is a string, opts.audience a string or "
                             "a list of them");

    if (!token) return fail(L, "missing");
    if (tlen > JWT_MAX_TOKEN) return fail(L, "malformed");
    const char *dot1 = memchr(token, '.', tlen);
    const char *dot2 = dot1 ? memchr(dot1 + 1, '.', tlen - (size_t)(dot1 + 1 - token)) : NULL;
    if (!dot2 || memchr(dot2 + 1, '.', tlen - (size_t)(dot2 + 1 - token)))
        return fail(L, "malformed");
    const char *payload = dot1 + 1, *sig64 = dot2 + 1;
    size_t hlen = (size_t)(dot1 - token), plen = (size_t)(dot2 - payload);
    size_t slen = tlen - (size_t)(sig64 - token);

    if (!push_json_part(L, token, hlen)) return fail(L, "malformed");
    int header = lua_gettop(L);
    if (lua_getfield(L, header, "alg") != LUA_TSTRING) return fail(L, "malformed");
    const struct jwt_alg *alg = jwt_alg_named(lua_tostring(L, -1));
    lua_pop(L, 1);
    if (!alg) return fail(L, "unsupported_algorithm");
    if (!allowed[alg - jwt_algs]) return fail(L, "algorithm_not_allowed");
    /* Extensions the verifier must understand: none are. */
    if (lua_getfield(L, header, "crit") != LUA_TNIL) return fail(L, "malformed");
    lua_pop(L, 1);

    /* The key: the one key, or the one the header's kid names. */
    if (keys_type == LUA_TTABLE) {
        if (lua_getfield(L, header, "kid") != LUA_TSTRING) return fail(L, "unknown_kid");
        if (lua_rawget(L, keys) != LUA_TSTRING) return fail(L, "unknown_kid");
    } else {
        lua_pushvalue(L, keys);
    }
    size_t klen;
    const char *key = lua_tolstring(L, -1, &klen);

    unsigned char sig[JWT_MAX_SIG + 3];
    if (codec_b64_decoded_max(slen) > sizeof sig) return fail(L, "bad_signature");
    size_t siglen = codec_b64_decode(sig64, slen, sig, true, false);
    if (siglen == CODEC_INVALID) return fail(L, "malformed");
    const unsigned char *signed_part = (const unsigned char *)token;
    size_t signed_len = (size_t)(dot2 - token);
    bool valid;
    if (alg->kind == JWT_HMAC) {
        /* A PEM text is never an HMAC secret: that is how an RS256 verifier is fooled into
         * checking an HS256 token with its public key as the secret. */
        if (klen == 0 || memmem(key, klen, "-----BEGIN", 10)) return fail(L, "bad_key");
        unsigned char mac[EVP_MAX_MD_SIZE];
        unsigned int maclen = 0;
        if (!HMAC(EVP_get_digestbyname(alg->md), key, (int)klen, signed_part, signed_len, mac,
                  &maclen))
            return luaL_error(L, "mw.jwt.verify: HMAC failed");
        valid = siglen == maclen && CRYPTO_memcmp(sig, mac, maclen) == 0;
    } else {
        if (!is_pem(key, klen)) return fail(L, "bad_key");
        EVP_PKEY *pkey = pem_key(L, key, klen, false);
        if (!pkey || !key_fits(alg, pkey)) return fail(L, "bad_key");
        valid = pkey_verify(alg, pkey, signed_part, signed_len, sig, siglen) == 1;
    }
    if (!valid) return fail(L, "bad_signature");

    if (!push_json_part(L, payload, plen)) return fail(L, "malformed");
    int claims = lua_gettop(L);
    double now = wall_now(), exp, nbf;
    int has_exp = time_claim(L, claims, "exp", &exp);
    int has_nbf = time_claim(L, claims, "nbf", &nbf);
    if (has_exp < 0 || has_nbf < 0) return fail(L, "malformed");
    if (has_exp && now >= exp + leeway) return fail(L, "expired");
    if (has_nbf && now + leeway < nbf) return fail(L, "not_yet_valid");
    if (issuer_type != LUA_TNIL) {
        lua_getfield(L, claims, "iss");
        if (lua_type(L, -1) != LUA_TSTRING || strcmp(lua_tostring(L, -1), lua_tostring(L, issuer)))
            return fail(L, "bad_issuer");
        lua_pop(L, 1);
    }
    /* RFC 7519 4.1.3: a token meant for an audience is refused by a verifier that names none. */
    int aud_type = lua_getfield(L, claims, "aud");
    if (aud_type != LUA_TNIL || audience_type != LUA_TNIL) {
        if (audience_type == LUA_TNIL || !audience_matches(L, lua_gettop(L), audience))
            return fail(L, "bad_audience");
    }
    lua_pop(L, 1);
    lua_pushvalue(L, claims);
    lua_pushvalue(L, header);
    return 2;
}

/* ---- mw.jwt.sign --------------------------------------------------------------------------- */

/* Pushes the base64url encoding of the string at the top of the stack, replacing it. */
static void to_b64url(lua_State *L)
{
    size_t len;
    const unsigned char *s = (const unsigned char *)lua_tolstring(L, -1, &len);
    luaL_Buffer b;
    char *p = luaL_buffinitsize(L, &b, codec_b64_encoded_len(len, true));
    luaL_pushresultsize(&b, codec_b64_encode(s, len, p, true));
    lua_remove(L, -2);
}

/* mw.jwt.sign(claims, key, alg [, header]) -> token. key: the HMAC secret, or a PEM private key.
 * header: extra header fields, like { kid = "2024-1" }. Upvalue 1: mw.json.encode. */
static int jwt_sign(lua_State *L)
{
    luaL_checktype(L, 1, LUA_TTABLE);
    size_t klen;
    const char *key = luaL_checklstring(L, 2, &klen);
    const char *name = luaL_checkstring(L, 3);
    if (!lua_isnoneornil(L, 4)) luaL_checktype(L, 4, LUA_TTABLE);
    const struct jwt_alg *alg = jwt_alg_named(name);
    if (!alg) return luaL_error(L, "mw.jwt.sign: unknown algorithm '%s'", name);
    EVP_PKEY *pkey = NULL;
    if (alg->kind == JWT_HMAC) {
        if (klen == 0 || is_pem(key, klen))
            return luaL_error(L, "mw.jwt.sign: %s needs a secret, not a PEM key", name);
    } else {
        pkey = is_pem(key, klen) ? pem_key(L, key, klen, true) : NULL;
        if (!pkey || !key_fits(alg, pkey))
            return luaL_error(L, "mw.jwt.sign: %s needs a PEM private key of its kind", name);
    }
    int anchor = lua_gettop(L); /* the key's userdata (or nothing) stays below */

    lua_newtable(L); /* the header */
    if (!lua_isnoneornil(L, 4)) {
        lua_pushnil(L);
        while (lua_next(L, 4)) {
            lua_pushvalue(L, -2);
            lua_insert(L, -2);
            lua_settable(L, -4);
        }
    }
    lua_pushstring(L, alg->name);
    lua_setfield(L, -2, "alg");
    if (lua_getfield(L, -1, "typ") == LUA_TNIL) {
        lua_pushliteral(L, "JWT");
        lua_setfield(L, -3, "typ");
    }
    lua_pop(L, 1);
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_insert(L, -2);
    lua_call(L, 1, 1);
    to_b64url(L);
    lua_pushliteral(L, ".");
    lua_pushvalue(L, lua_upvalueindex(1));
    lua_pushvalue(L, 1);
    lua_call(L, 1, 1);
    to_b64url(L);
    lua_concat(L, 3);
    size_t len;
    const unsigned char *data = (const unsigned char *)lua_tolstring(L, -1, &len);

    unsigned char sig[JWT_MAX_SIG];
    size_t siglen = 0;
    if (alg->kind == JWT_HMAC) {
        unsigned int n = 0;
        if (HMAC(EVP_get_digestbyname(alg->md), key, (int)klen, data, len, sig, &n)) siglen = n;
    } else {
        siglen = pkey_sign(alg, pkey, data, len, sig);
    }
    if (siglen == 0) return luaL_error(L, "mw.jwt.sign: signing failed");
    lua_pushliteral(L, ".");
    lua_pushlstring(L, (const char *)sig, siglen);
    to_b64url(L);
    lua_concat(L, 3);
    (void)anchor;
    return 1;
}

/* ---- registration -------------------------------------------------------------------------- */

void lb_push_crypto(lua_State *L, int api)
{
    api = lua_absindex(L, api);
    luaL_newmetatable(L, key_meta);
    lua_pushcfunction(L, key_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushliteral(L, "locked");
    lua_setfield(L, -2, "__metatable");
    lua_pop(L, 1);
    lua_newtable(L); /* the key cache */
    lua_rawsetp(L, LUA_REGISTRYINDEX, &key_cache_key);

    static const luaL_Reg crypto[] = {
        { "hmac", crypto_hmac }, { "random", crypto_random }, { "equal", crypto_equal },
        { NULL, NULL },
    };
    luaL_newlib(L, crypto);
    static const char *const digests[] = { "sha1", "sha256", "sha384", "sha512" };
    for (size_t i = 0; i < sizeof digests / sizeof digests[0]; i++) {
        lua_pushstring(L, digests[i]);
        lua_pushcclosure(L, crypto_digest, 1);
        lua_setfield(L, -2, digests[i]);
    }
    lua_setfield(L, api, "crypto");

    static const luaL_Reg base64[] = {
        { "encode", base64_encode }, { "decode", base64_decode }, { NULL, NULL },
    };
    luaL_newlib(L, base64);
    lua_setfield(L, api, "base64");
    static const luaL_Reg hex[] = {
        { "encode", hex_encode }, { "decode", hex_decode }, { NULL, NULL },
    };
    luaL_newlib(L, hex);
    lua_setfield(L, api, "hex");

    lua_getfield(L, api, "json");
    lua_createtable(L, 0, 2);
    lua_getfield(L, -2, "decode");
    lua_pushcclosure(L, jwt_verify, 1);
    lua_setfield(L, -2, "verify");
    lua_getfield(L, -2, "encode");
    lua_pushcclosure(L, jwt_sign, 1);
    lua_setfield(L, -2, "sign");
    lua_setfield(L, api, "jwt");
    lua_pop(L, 1);
}
