// letsencrypt: automatic TLS certificates for io_uring C++ servers. The umbrella header.
#pragma once

#include "letsencrypt/error.hpp"
#include "letsencrypt/io.hpp"
#include "letsencrypt/config.hpp"
#include "letsencrypt/http.hpp"
#include "letsencrypt/manager.hpp"
#include "letsencrypt/result.hpp"
