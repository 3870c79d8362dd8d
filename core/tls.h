/* TLS (wss://) for listeners: OpenSSL 3 driven non-blocking, behind the transport interface.
 *
 * TLS 1.2 and 1.3 only, forward-secret AEAD ciphers, no renegotiation or compression, ALPN
 * http/1.1. A listener may hold several certificates: the first is the default and the others
 * are chosen by SNI when the client names a host one of them covers (its subject alternative
 * names, wildcards included). Contexts are reference-counted so that SIGHUP can load new
 * certificates while connections, and handshakes, on the old ones go on. */
#ifndef MOONWIRE_TLS_H
#define MOONWIRE_TLS_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "transport.h"

struct tls_context;

/* Builds a context from the certificate/key pairs (PEM files; a certificate file may hold its
 * chain). Returns it with one reference, or NULL with a message naming the file and the reason
 * in err. */
struct tls_context *tls_context_new(const struct cfg_tls *certs, size_t count, char *err,
                                    size_t errlen);
void tls_context_unref(struct tls_context *ctx);

/* Makes io, a plain TCP stream just accepted (tio_init_tcp), speak TLS: the handshake runs
 * within its first reads. Takes a reference to ctx. Returns 0, or -1 when out of memory (io
 * is then still plain TCP). */
int tls_attach(struct tio *io, struct tls_context *ctx);

/* True once io's TLS handshake has completed, or when io is not TLS. */
bool tls_handshake_done(const struct tio *io);

extern const struct transport transport_tls;

#endif
