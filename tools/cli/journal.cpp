// `letsencrypt journal` subcommands.
#include "journal.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <sstream>
#include <optional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "letsencrypt/io/ring.hpp"
#include "letsencrypt/io/scope.hpp"
#include "letsencrypt/store/journal.hpp"
#include "letsencrypt/store/replay.hpp"
#include "letsencrypt/store/state.hpp"

namespace letsencrypt::cli {
namespace {

using namespace letsencrypt::store;

constexpr const char* usage_text =
    "usage: letsencrypt journal <command> [options] FILE\n"
    "\n"
    "Commands:\n"
    "  dump FILE               print every record (private keys are never printed)\n"
    "  verify FILE             check every record's CRC; names the offset of any damage\n"
    "                          (exit 0 intact, 1 corrupt, 3 torn tail that open would cut)\n"
    "  compact FILE            rewrite FILE as a snapshot of its live state (takes the lock)\n"
    "  export FILE             print the state as JSON (contains private keys: keep it private)\n"
    "  import-go JSON FILE     import a cache file written by Go's rsc.io/letsencrypt (or by\n"
    "                          export) into the journal FILE, which must hold no state yet\n"
    "\n"
    "Options:\n"
    "  -h, --help              show this help\n";

std::string iso(std::int64_t unix_secs) {
  if (unix_secs == 0) return "-";
  std::time_t t = static_cast<std::time_t>(unix_secs);
  std::tm tm{};
  if (!gmtime_r(&t, &tm)) return std::to_string(unix_secs);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string list(const std::vector<std::string>& v) {
  std::string s = "[";
  for (std::size_t i = 0; i < v.size(); ++i) s += (i ? ", " : "") + v[i];
  return s + "]";
}

std::string redacted(const std::string& key) {
  return fmt::format("<redacted, {} bytes>", key.size());
}

std::size_t count_certs(const std::string& pem) {
  std::size_t n = 0;
  for (std::size_t p = pem.find("-----BEGIN CERTIFICATE-----"); p != std::string::npos;
       p = pem.find("-----BEGIN CERTIFICATE-----", p + 1))
    ++n;
  return n;
}

std::string describe(const record& r) {
  struct visitor {
    std::string operator()(const account_record& a) const {
      return fmt::format("account url={} contact={} tos_agreed={} key: {}", a.url, list(a.contact),
                         a.tos_agreed, redacted(a.key_pem));
    }
    std::string operator()(const hosts_record& h) const {
      return h.hosts ? fmt::format("hosts {}", list(*h.hosts)) : "hosts (no allowlist)";
    }
    std::string operator()(const cert_record& c) const {
      return fmt::format(
          "cert names={} not_after={} ari_window=[{}, {}] ari_cert_id={} chain: {} certificates, "
          "{} bytes key: {}",
          list(c.names), iso(c.not_after.time_since_epoch().count()),
          iso(c.ari_start.time_since_epoch().count()), iso(c.ari_end.time_since_epoch().count()),
          c.ari_cert_id.empty() ? "-" : c.ari_cert_id, count_certs(c.chain_pem), c.chain_pem.size(),
          redacted(c.key_pem));
    }
    std::string operator()(const remove_record& r) const {
      return fmt::format("remove names={}", list(r.names));
    }
    std::string operator()(const rate_limit_record& r) const {
      return fmt::format("rate_limit bucket={} tokens={} last_refill_ms={}", r.bucket, r.tokens,
                         r.last_refill.time_since_epoch().count());
    }
    std::string operator()(const checkpoint_record& c) const {
      return fmt::format("checkpoint generation={} written={}", c.generation,
                         iso(c.written.time_since_epoch().count()));
    }
  };
  return std::visit(visitor{}, r);
}

bool read_file(const std::string& path, std::vector<std::byte>& out) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    fmt::print(stderr, "letsencrypt journal: cannot open {}\n", path);
    return false;
  }
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  out.resize(s.size());
  std::memcpy(out.data(), s.data(), s.size());
  return true;
}

int cmd_dump(const std::string& path) {
  std::vector<std::byte> img;
  if (!read_file(path, img)) return 1;
  if (img.size() < journal_magic.size() ||
      std::memcmp(img.data(), journal_magic.data(), journal_magic.size()) != 0) {
    fmt::print(stderr, "{}: not a journal file (bad magic at offset 0)\n", path);
    return 1;
  }
  std::size_t off = journal_magic.size();
  std::uint64_t n = 0;
  while (off < img.size()) {
    auto d = decode(std::span(img).subspan(off));
    if (d.status != decode_status::ok) {
      fmt::print(stderr, "{}: {} record at offset {} ({} bytes follow); stopping\n", path,
                 d.status == decode_status::incomplete    ? "truncated"
                 : d.status == decode_status::unsupported ? "intact but unknown (written by a newer version?)"
                                                          : "damaged",
                 off,
                 img.size() - off);
      return 1;
    }
    fmt::print("{:>10}  {}\n", off, describe(d.rec));
    off += d.size;
    ++n;
  }
  fmt::print("{} records, {} bytes\n", n, img.size());
  return 0;
}

// Reads and replays the journal at `path` into `img`; null (the reason printed) when it
// cannot be read or is corrupt.
std::optional<replay_result> replay_file(const std::string& path, std::vector<std::byte>& img) {
  if (!read_file(path, img)) return std::nullopt;
  auto rr = replay(img);
  if (rr.error) {
    fmt::print(stderr, "{}: CORRUPT at offset {}: {}\n", path, rr.error_offset, rr.message);
    return std::nullopt;
  }
  return rr;
}

int cmd_verify(const std::string& path) {
  std::vector<std::byte> img;
  auto replayed = replay_file(path, img);
  if (!replayed) return 1;
  const replay_result& rr = *replayed;
  if (rr.torn_bytes) {
    fmt::print(stderr, "{}: torn tail of {} bytes at offset {} (opening the journal cuts it); {} "
               "intact records before it\n", path, rr.torn_bytes, rr.good_end, rr.records);
    return 3;
  }
  fmt::print("{}: ok, {} records ({} live), {} bytes, generation {}\n", path, rr.records,
             rr.live_records, img.size(), rr.generation);
  return 0;
}

int cmd_export(const std::string& path) {
  std::vector<std::byte> img;
  auto replayed = replay_file(path, img);
  if (!replayed) return 1;
  const replay_result& rr = *replayed;
  if (rr.torn_bytes)
    fmt::print(stderr, "{}: ignoring a torn tail of {} bytes at offset {}\n", path, rr.torn_bytes,
               rr.good_end);
  fmt::print("{}", marshal(rr.state));
  return 0;
}

std::unique_ptr<journal> open_or_report(const std::string& path, bool create) {
  journal_options o;
  o.create = create;
  o.log = [](std::string_view m) { fmt::print(stderr, "{}\n", m); };
  open_report rep;
  auto j = journal::open(path, std::move(o), &rep);
  if (!j) {
    fmt::print(stderr, "letsencrypt journal: {}\n", rep.message.empty() ? j.error().message() : rep.message);
    return nullptr;
  }
  return std::move(*j);
}

int cmd_compact(const std::string& path) {
  auto j = open_or_report(path, false);
  if (!j) return 1;
  const auto before = j->stats();
  io::ring r;
  auto c = r.run(j->compact());
  if (!c) {
    fmt::print(stderr, "letsencrypt journal: compacting {}: {}\n", path, c.error().message());
    return 1;
  }
  fmt::print("{}: {} records, {} bytes -> {} records, {} bytes\n", path, before.records,
             before.bytes, j->stats().records, j->stats().bytes);
  return 0;
}

int cmd_import(const std::string& json_path, const std::string& path) {
  std::ifstream in(json_path, std::ios::binary);
  if (!in) {
    fmt::print(stderr, "letsencrypt journal: cannot open {}\n", json_path);
    return 1;
  }
  std::stringstream ss;
  ss << in.rdbuf();
  unmarshal_report rep;
  auto st = unmarshal(ss.str(), &rep);
  if (!st) {
    fmt::print(stderr, "letsencrypt journal: {}: {}\n", json_path, rep.message);
    return 1;
  }
  auto j = open_or_report(path, true);
  if (!j) return 1;
  if (!j->state().empty()) {
    fmt::print(stderr, "letsencrypt journal: {} already holds state; import only into a new journal\n",
               path);
    return 1;
  }
  io::ring r;
  auto recs = st->snapshot();
  auto all = [&]() -> io::task<int> {
    std::vector<io::task<result<std::uint64_t>>> ts;
    for (auto& rec : recs) ts.push_back(j->append(rec));
    auto res = co_await io::when_all(std::move(ts));
    for (auto& x : res)
      if (!x) {
        fmt::print(stderr, "letsencrypt journal: writing {}: {}\n", path, x.error().message());
        co_return 1;
      }
    co_return 0;
  };
  if (int rc = r.run(all()); rc != 0) return rc;
  fmt::print("imported {} ({}) into {}: account: {}, hosts: {}, {} certificates\n", json_path,
             rep.format == json_format::go_cache ? "Go rsc.io/letsencrypt cache" : "exported state",
             path, st->account ? "yes" : "no",
             st->hosts ? std::to_string(st->hosts->size()) : std::string("no allowlist"),
             st->distinct_certs().size());
  return 0;
}

}  // namespace

int journal_command(int argc, char** argv) {
  std::vector<std::string> args;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help" || a == "help") {
      fmt::print("{}", usage_text);
      return 0;
    }
    args.push_back(std::move(a));
  }
  auto usage = [] {
    fmt::print(stderr, "{}", usage_text);
    return 2;
  };
  if (args.empty()) return usage();
  const std::string& cmd = args[0];
  if (cmd == "import-go") {
    if (args.size() != 3) return usage();
    return cmd_import(args[1], args[2]);
  }
  if (args.size() != 2) return usage();
  if (cmd == "dump") return cmd_dump(args[1]);
  if (cmd == "verify") return cmd_verify(args[1]);
  if (cmd == "compact") return cmd_compact(args[1]);
  if (cmd == "export") return cmd_export(args[1]);
  return usage();
}

}  // namespace letsencrypt::cli
