/* TLS over non-blocking sockets. Every OpenSSL call starts with a clean error queue and ends in
 * SSL_get_error, whose answer becomes EAGAIN (with what the operation waits for in t->wants),
 * 0 for the end of the stream, or EPROTO with OpenSSL's reason in t->error for the connection
 * to log. */
#include "tls.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>


/* For TLS 1.2 clients: ECDHE key exchange and AEAD ciphers only (Mozilla's "intermediate"
 * profile). TLS 1.3's suites are OpenSSL's defaults, all of which qualify. */
static const char tls12_ciphers[] =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";

struct tls_context {
    int refs;
    size_t count;
    SSL_CTX *ctx[CFG_MAX_CERTS]; /* ctx[0]: the default certificate */
};

/* The most recent OpenSSL error as a short reason ("no shared cipher"), or fallback. */
static const char *openssl_reason(const char *fallback)
{
    unsigned long e = ERR_peek_last_error();
    const char *r = e ? ERR_reason_error_string(e) : NULL;
    return r ? r : fallback;
}

/* ---- contexts ------------------------------------------------------------------------------ */

/* Picks the certificate for the name the client asked for (SNI); the default stays otherwise. */
static int on_servername(SSL *ssl, int *alert, void *arg)
{
    (void)alert;
    const struct tls_context *t = arg;
    const char *name = SSL_get_servername(ssl, TLSEXT_NAMETYPE_host_name);
    if (!name) return SSL_TLSEXT_ERR_OK;
    for (size_t i = 0; i < t->count; i++) {
        X509 *cert = SSL_CTX_get0_certificate(t->ctx[i]);
        if (cert && X509_check_host(cert, name, 0, 0, NULL) == 1) {
            if (i) SSL_set_SSL_CTX(ssl, t->ctx[i]);
            break;
        }
    }
    return SSL_TLSEXT_ERR_OK;
}

/* ALPN: HTTP/1.1, the only protocol the WebSocket upgrade runs over here. A client that offers
 * only h2 gets no ALPN answer and may go on without it. */
static int on_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
                   const unsigned char *in, unsigned int inlen, void *arg)
{
    (void)ssl;
    (void)arg;
    static const unsigned char http11[] = "\x08http/1.1";
    unsigned char *selected;
    if (SSL_select_next_proto(&selected, outlen, http11, sizeof http11 - 1, in, inlen) !=
        OPENSSL_NPN_NEGOTIATED)
        return SSL_TLSEXT_ERR_NOACK;
    *out = selected;
    return SSL_TLSEXT_ERR_OK;
}

static SSL_CTX *make_ctx(const struct cfg_tls *c, struct tls_context *t, char *err,
                         size_t errlen)
{
    ERR_clear_error();
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errlen, "cannot create a TLS context: %s", openssl_reason("out of memory"));
        return NULL;
    }
    SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE |
                                 SSL_OP_NO_COMPRESSION | SSL_OP_IGNORE_UNEXPECTED_EOF);
    /* Partial writes and a moving buffer: the send queue hands OpenSSL a record's worth at a
     * time, from wherever its head is. Released buffers: an idle TLS connection keeps no
     * 16 KiB read and write buffers. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER |
                              SSL_MODE_RELEASE_BUFFERS);
    const char *what = NULL;
    if (!SSL_CTX_set_cipher_list(ctx, tls12_ciphers)) what = "cipher list";
    else if (SSL_CTX_use_certificate_chain_file(ctx, c->cert) != 1) what = c->cert;
    else if (SSL_CTX_use_PrivateKey_file(ctx, c->key, SSL_FILETYPE_PEM) != 1) what = c->key;
    else if (SSL_CTX_check_private_key(ctx) != 1) what = "the key";
    if (what) {
        unsigned long e = ERR_peek_last_error();
        const char *sys = ERR_GET_LIB(e) == ERR_LIB_SYS ? strerror(ERR_GET_REASON(e)) : NULL;
        if (strcmp(what, "the key") == 0)
            snprintf(err, errlen, "TLS key %s does not match certificate %s", c->key, c->cert);
        else
            snprintf(err, errlen, "cannot load TLS %s %s: %s",
                     what == c->cert ? "certificate" : what == c->key ? "key" : "", what,
                     sys ? sys : openssl_reason("unknown error"));
        SSL_CTX_free(ctx);
        return NULL;
    }
    SSL_CTX_set_tlsext_servername_callback(ctx, on_servername);
    SSL_CTX_set_tlsext_servername_arg(ctx, t);
    SSL_CTX_set_alpn_select_cb(ctx, on_alpn, NULL);
    return ctx;
}

struct tls_context *tls_context_new(const struct cfg_tls *certs, size_t count, char *err,
                                    size_t errlen)
{
    struct tls_context *t = calloc(1, sizeof *t);
    if (!t) {
        snprintf(err, errlen, "out of memory");
        return NULL;
    }
    t->refs = 1;
    for (size_t i = 0; i < count && i < CFG_MAX_CERTS; i++) {
        t->ctx[i] = make_ctx(&certs[i], t, err, errlen);
        if (!t->ctx[i]) {
            tls_context_unref(t);
            return NULL;
        }
        t->count++;
    }
    return t;
}

void tls_context_unref(struct tls_context *t)
{
    if (!t || --t->refs > 0) return;
    for (size_t i = 0; i < t->count; i++) SSL_CTX_free(t->ctx[i]);
    free(t);
}

/* ---- the transport ------------------------------------------------------------------------- */

int tls_attach(struct tio *io, struct tls_context *t)
{
    SSL *ssl = SSL_new(t->ctx[0]);
    if (!ssl) return -1;
    if (SSL_set_fd(ssl, io->fd) != 1) {
        SSL_free(ssl);
        return -1;
    }
    SSL_set_accept_state(ssl);
    io->tls = ssl;
    io->tls_ctx = t;
    t->refs++;
    io->ops = &transport_tls;
    return 0;
}

bool tls_handshake_done(const struct tio *io)
{
    return !io->tls || SSL_is_init_finished(io->tls);
}

/* A failed TLS operation: the reason for the connection's log line, then EPROTO. OpenSSL's
 * reason strings are static, so the pointer stays good. */
static ssize_t tls_failed(struct tio *io)
{
    const char *reason = openssl_reason("protocol error");
    io->error = strcmp(reason, "http request") == 0
                    ? "http request (plain HTTP or ws:// sent to a TLS port)"
                    : reason;
    ERR_clear_error();
    errno = EPROTO;
    return -1;
}

/* Maps a failed SSL_read or SSL_write to the transport's results. */
static ssize_t tls_result(struct tio *io, SSL *ssl, int rc, int wants_other)
{
    switch (SSL_get_error(ssl, rc)) {
    case SSL_ERROR_WANT_READ:
        if (wants_other == IO_WRITE_WANTS_READ) io->wants |= IO_WRITE_WANTS_READ;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_WANT_WRITE:
        if (wants_other == IO_READ_WANTS_WRITE) io->wants |= IO_READ_WANTS_WRITE;
        errno = EAGAIN;
        return -1;
    case SSL_ERROR_ZERO_RETURN: return 0; /* close_notify (or EOF: IGNORE_UNEXPECTED_EOF) */
    case SSL_ERROR_SYSCALL:
        ERR_clear_error();
        if (errno == 0) errno = ECONNRESET;
        return -1;
    default: return tls_failed(io);
    }
}

static ssize_t tls_read(struct tio *io, void *buf, size_t len)
{
    SSL *ssl = io->tls;
    ERR_clear_error();
    errno = 0;
    int n = SSL_read(ssl, buf, len > INT_MAX ? INT_MAX : (int)len);
    if (n > 0) return n;
    return tls_result(io, ssl, n, IO_READ_WANTS_WRITE);
}

/* Small frames are gathered into one buffer first, so they share TLS records instead of paying
 * for one each. After EAGAIN the send queue offers the same bytes again, from its head, as
 * OpenSSL requires (the moving-buffer mode allows another address). */
static ssize_t tls_writev(struct tio *io, const struct iovec *iov, int n)
{
    SSL *ssl = io->tls;
    unsigned char gather[16384];
    const void *p = iov[0].iov_base;
    size_t len = iov[0].iov_len;
    if (n > 1 && len < sizeof gather) {
        len = 0;
        for (int i = 0; i < n && len < sizeof gather; i++) {
            size_t take = iov[i].iov_len < sizeof gather - len ? iov[i].iov_len
                                                               : sizeof gather - len;
            memcpy(gather + len, iov[i].iov_base, take);
            len += take;
        }
        p = gather;
    }
    ERR_clear_error();
    errno = 0;
    int w = SSL_write(ssl, p, len > INT_MAX ? INT_MAX : (int)len);
    if (w > 0) return w;
    return tls_result(io, ssl, w, IO_WRITE_WANTS_READ);
}

static bool tls_pending(const struct tio *io)
{
    return SSL_pending(io->tls) > 0 || SSL_has_pending(io->tls);
}

static void tls_shutdown(struct tio *io)
{
    /* close_notify, best effort: a socket too full for it is closing anyway. */
    ERR_clear_error();
    if (SSL_is_init_finished(io->tls)) SSL_shutdown(io->tls);
    ERR_clear_error();
    shutdown(io->fd, SHUT_WR);
}

static void tls_close(struct tio *io)
{
    SSL_free(io->tls);
    io->tls = NULL;
    tls_context_unref(io->tls_ctx);
    io->tls_ctx = NULL;
    close(io->fd);
    io->fd = -1;
}

const struct transport transport_tls = { "tls", tls_read, tls_writev, tls_pending,
                                          tls_shutdown, tls_close };
