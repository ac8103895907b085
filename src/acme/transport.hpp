// The client's default transport: src/http's client over TLS (or plain TCP for http URLs).
#pragma once

#include "letsencrypt/acme/client.hpp"

namespace letsencrypt::acme {

/// A fetch function over one http::client (kept-alive connections per origin) whose
/// connector opens TLS to https origins (trusting options.ca_pem, or the system store when
/// empty) and plain TCP to http origins. Limits and the per-request timeout come from
/// `options`. The returned function must be used from one ring thread.
http_fetch make_default_fetch(const client_options& options);

}  // namespace letsencrypt::acme
