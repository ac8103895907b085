// HTTP/1.1 message types shared by the parser adapter, the client and the server; they are
// public (handlers use them), so they live in letsencrypt/http.hpp.
#pragma once

#include "letsencrypt/http.hpp"
