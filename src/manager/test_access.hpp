// manager_test_access: what tests reach inside a manager that users do not.
#pragma once

#include "letsencrypt/acme/client.hpp"
#include "letsencrypt/manager.hpp"

namespace letsencrypt {

struct manager_test_access {
  /// Sends the manager's ACME requests through `f` (a responder in front of the CA). Call
  /// before the manager contacts the CA.
  static void set_acme_fetch(manager& m, acme::http_fetch f);
};

}  // namespace letsencrypt
