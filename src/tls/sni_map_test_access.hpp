// sni_map_test_access: what tests reach inside an sni_map that users do not.
#pragma once

#include <cstddef>
#include <memory>
#include <string_view>

#include "letsencrypt/tls/sni_map.hpp"

namespace letsencrypt::tls {

struct sni_map_test_access {
  /// Publishes `e` (named e->name, normalised) in the slot the map would use for
  /// `hash_name`: a full 64-bit hash collision, which the keyed hash makes impossible to
  /// find from outside, so that the name comparison behind a hash match can be tested.
  static void put_under_hash_of(sni_map& m, std::string_view hash_name, std::shared_ptr<const sni_entry> e);
  /// How many of the owned reader stripes (shared by every map) threads hold now.
  static int owned_stripes_claimed() noexcept;
  /// Slots in the map's published tables, over every shard: what its tables cost, at 64
  /// bytes a slot.
  static std::size_t slots(const sni_map& m) noexcept;
};

}  // namespace letsencrypt::tls
