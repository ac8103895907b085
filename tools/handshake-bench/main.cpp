// handshake-bench: a TLS handshake load generator on the library's io_uring core.
//
// Connections run as coroutines on one ring. Real handshakes drive OpenSSL client objects
// over memory BIOs; the flood mode replays a captured ClientHello (fresh random and key share
// each time) and drops the connection once the server's first flight has arrived, so the
// client does no crypto. The server's own CPU time (from /proc/PID/stat) gives handshakes
// per server CPU-second, a figure that holds even when the client is the limit.
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <optional>
#include <span>
#include <stop_token>
#include <string>
#include <string_view>
#include <vector>

#include <fmt/core.h>

#include "client_hello.hpp"
#include "histogram.hpp"
#include "letsencrypt/io/ops.hpp"
#include "letsencrypt/io/ring.hpp"
#include "letsencrypt/io/scope.hpp"
#include "letsencrypt/io/task.hpp"
#include "letsencrypt/io/unique_fd.hpp"
#include "letsencrypt/tls/handles.hpp"

namespace {

using namespace letsencrypt;
using bench::histogram;
using io::clock;
using std::chrono::duration_cast;
using std::chrono::nanoseconds;

enum class run_mode { full, resume, flood };

const char* mode_name(run_mode m) {
  switch (m) {
    case run_mode::full: return "full";
    case run_mode::resume: return "resume";
    case run_mode::flood: return "flood";
  }
  return "?";
}

// How one attempt ended. Everything but ok and cancelled is a failure kind in the report.
enum class outcome : unsigned {
  ok,
  connect_refused,
  connect_error,
  timeout,
  reset,
  eof,
  alert,
  tls_error,
  not_resumed,
  http_error,
  io_error,
  // Open loop: due inside the window but still not started --timeout after it closed (the
  // schedule had fallen that far behind); counted as a failure without being attempted.
  not_started,
  cancelled,
};
constexpr std::size_t failure_kinds = static_cast<std::size_t>(outcome::cancelled);

const char* outcome_name(outcome o) {
  switch (o) {
    case outcome::ok: return "ok";
    case outcome::connect_refused: return "connect_refused";
    case outcome::connect_error: return "connect_error";
    case outcome::timeout: return "timeout";
    case outcome::reset: return "reset";
    case outcome::eof: return "eof";
    case outcome::alert: return "alert";
    case outcome::tls_error: return "tls_error";
    case outcome::not_resumed: return "not_resumed";
    case outcome::http_error: return "http_error";
    case outcome::io_error: return "io_error";
    case outcome::not_started: return "not_started";
    case outcome::cancelled: return "cancelled";
  }
  return "?";
}

struct options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  unsigned connections = 32;
  double duration = 5.0;
  double warmup = 1.0;
  std::uint64_t count = 0;
  double timeout = 5.0;
  double rate = 0;  // open loop: attempts started per second; 0: closed loop
  run_mode mode = run_mode::full;
  bool http = false;
  std::vector<std::string> names;
  std::vector<pid_t> server_pids;
  unsigned sessions = 256;
  bool json = false;
  std::string plot;
  std::string trace;
  std::string label;
  std::string verify_ca;
};

const char* usage_text = R"(usage: handshake-bench --port PORT [options]

Opens CONNECTIONS concurrent TLS 1.3 connections to HOST:PORT, each doing handshakes one after
another for a fixed time or count, and reports handshakes per second, latency percentiles,
failures by kind, the client's CPU time and, with --server-pid, handshakes per server
CPU-second (from the server's /proc/PID/stat; valid even when the client is the limit).

Target and load:
  --host ADDR            server address (default 127.0.0.1)
  --port PORT            server port (required)
  -c, --connections N    concurrent connections (default 32)
  -d, --duration SEC     measured time (default 5); ignored once --count is reached
  -n, --count N          stop after N successful handshakes (default: no limit)
  --warmup SEC           time run but not measured before the measurement (default 1)
  --timeout SEC          deadline of one attempt, connect to close (default 5)
  --rate R               open loop: start R attempts per second on a fixed schedule, on at
                         most CONNECTIONS at once; latency counts from the scheduled start,
                         so time spent waiting for a free connection is not hidden; every
                         attempt due in the measured time counts, those still in flight
                         when it ends are waited for
                         (default: closed loop, each connection starts its next at once)
Kind of handshake:
  --mode full|resume|flood
      full    real full handshakes (X25519, the server's certificate); the client does
              the crypto too, so one client core is usually the limit
      resume  real resumed handshakes: a ticket per name is obtained first (not
              measured), then every handshake offers it (SSL_set_session)
      flood   replays a ClientHello captured at start-up from a real handshake, with
              fresh random, session id and X25519 key share each time, and drops the
              connection once the server's flight through its Finished has arrived; the
              client does no crypto, the server does all of its handshake work
  --http                 send "GET / HTTP/1.1" after the handshake and read the response
                         (full and resume modes)
  --sessions N           resume mode: names to hold tickets for (default 256)
  --verify CAFILE        verify the server's chain and name against CAFILE
SNI names (chosen uniformly at random per handshake; none given: no SNI):
  --sni NAME             one name (repeatable)
  --sni-file FILE        names, one per line
  --sni-pattern PAT      names from a pattern with one %d, e.g. name-%d.bench.test ...
  --sni-count K          ... numbered 0..K-1 (default 1)
Server cost:
  --server-pid PID[,PID] processes whose CPU time is the server's (repeatable)
Output:
  --json                 print one JSON object instead of text
  --plot FILE.png        write the latency distribution with gnuplot
  --trace FILE           write one line per measured attempt: due time (us from the
                         start of measurement), start delay (us the attempt started after
                         it was due; open loop), latency (us), and ok or the failure kind;
                         shows whether slow handshakes come in bursts and whether the load
                         generator itself started late
  --label TEXT           a label for the report and plot
  -h, --help             this text
Exit status: 0 when at least one handshake succeeded, 1 on a run failure (server not
reachable, no handshake), 2 on bad arguments.
)";

[[noreturn]] void usage_error(const std::string& msg) {
  fmt::print(stderr, "handshake-bench: {}\n(see --help)\n", msg);
  std::exit(2);
}

[[noreturn]] void fatal(const std::string& msg) {
  fmt::print(stderr, "handshake-bench: {}\n", msg);
  std::exit(1);
}

template <class T>
T parse_number(std::string_view opt, std::string_view s) {
  T v{};
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || p != s.data() + s.size()) usage_error(fmt::format("{}: not a number: '{}'", opt, s));
  return v;
}

std::vector<std::string> names_from_pattern(const std::string& pat, std::uint64_t k) {
  auto at = pat.find("%d");
  if (at == std::string::npos || pat.find("%d", at + 1) != std::string::npos || pat.find('%', at + 2) != std::string::npos ||
      pat.find('%') != at)
    usage_error("--sni-pattern needs exactly one %d and no other %");
  std::vector<std::string> out;
  out.reserve(k);
  for (std::uint64_t i = 0; i < k; ++i) out.push_back(pat.substr(0, at) + std::to_string(i) + pat.substr(at + 2));
  return out;
}

options parse_args(int argc, char** argv) {
  options o;
  std::string pattern;
  std::uint64_t pattern_count = 1;
  bool have_port = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    std::string value;
    bool inline_value = false;
    if (a.rfind("--", 0) == 0) {
      auto eq = a.find('=');
      if (eq != std::string::npos) {
        value = a.substr(eq + 1);
        a = a.substr(0, eq);
        inline_value = true;
      }
    }
    auto need = [&]() -> std::string {
      if (inline_value) return value;
      if (i + 1 >= argc) usage_error(a + " needs a value");
      return argv[++i];
    };
    if (a == "-h" || a == "--help") {
      fmt::print("{}", usage_text);
      std::exit(0);
    } else if (a == "--host") {
      o.host = need();
    } else if (a == "--port") {
      auto p = parse_number<unsigned>(a, need());
      if (p == 0 || p > 65535) usage_error("--port must be 1..65535");
      o.port = static_cast<std::uint16_t>(p);
      have_port = true;
    } else if (a == "-c" || a == "--connections") {
      o.connections = parse_number<unsigned>(a, need());
      if (o.connections == 0 || o.connections > 100000) usage_error("--connections must be 1..100000");
    } else if (a == "-d" || a == "--duration") {
      o.duration = parse_number<double>(a, need());
      if (!(o.duration > 0)) usage_error("--duration must be positive");
    } else if (a == "-n" || a == "--count") {
      o.count = parse_number<std::uint64_t>(a, need());
      if (o.count == 0) usage_error("--count must be positive");
    } else if (a == "--warmup") {
      o.warmup = parse_number<double>(a, need());
      if (!(o.warmup >= 0)) usage_error("--warmup must be >= 0");
    } else if (a == "--timeout") {
      o.timeout = parse_number<double>(a, need());
      if (!(o.timeout > 0)) usage_error("--timeout must be positive");
    } else if (a == "--rate") {
      o.rate = parse_number<double>(a, need());
      if (!(o.rate > 0) || o.rate > 10'000'000) usage_error("--rate must be 0 < R <= 10000000");
    } else if (a == "--mode") {
      std::string m = need();
      if (m == "full") o.mode = run_mode::full;
      else if (m == "resume") o.mode = run_mode::resume;
      else if (m == "flood") o.mode = run_mode::flood;
      else usage_error("--mode must be full, resume or flood");
    } else if (a == "--http") {
      o.http = true;
    } else if (a == "--sessions") {
      o.sessions = parse_number<unsigned>(a, need());
      if (o.sessions == 0) usage_error("--sessions must be positive");
    } else if (a == "--verify") {
      o.verify_ca = need();
    } else if (a == "--sni") {
      o.names.push_back(need());
    } else if (a == "--sni-file") {
      std::string path = need();
      std::ifstream f(path);
      if (!f) usage_error("cannot read --sni-file " + path);
      for (std::string line; std::getline(f, line);) {
        while (!line.empty() && (line.back() == '\r' || line.back() == ' ')) line.pop_back();
        if (!line.empty() && line[0] != '#') o.names.push_back(line);
      }
    } else if (a == "--sni-pattern") {
      pattern = need();
    } else if (a == "--sni-count") {
      pattern_count = parse_number<std::uint64_t>(a, need());
      if (pattern_count == 0 || pattern_count > 10'000'000) usage_error("--sni-count must be 1..10000000");
    } else if (a == "--server-pid") {
      std::string v = need();
      std::size_t start = 0;
      while (start <= v.size()) {
        auto comma = v.find(',', start);
        std::string one = v.substr(start, comma == std::string::npos ? std::string::npos : comma - start);
        auto pid = parse_number<int>(a, one);
        if (pid <= 0) usage_error("--server-pid must be a positive process id");
        o.server_pids.push_back(pid);
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
    } else if (a == "--json") {
      o.json = true;
    } else if (a == "--trace") {
      o.trace = need();
    } else if (a == "--plot") {
      o.plot = need();
    } else if (a == "--label") {
      o.label = need();
    } else {
      usage_error("unknown argument '" + a + "'");
    }
  }
  if (!have_port) usage_error("--port is required");
  if (!pattern.empty()) {
    auto more = names_from_pattern(pattern, pattern_count);
    o.names.insert(o.names.end(), more.begin(), more.end());
  }
  for (const auto& n : o.names)
    if (n.empty() || n.size() > 253) usage_error("SNI names must be 1..253 bytes");
  if (o.http && o.mode == run_mode::flood) usage_error("--http does not apply to --mode flood");
  return o;
}

// CPU time of a process (all its threads) in seconds, from /proc/PID/stat.
std::optional<double> process_cpu_seconds(pid_t pid) {
  std::ifstream f("/proc/" + std::to_string(pid) + "/stat");
  std::string s;
  if (!f || !std::getline(f, s)) return std::nullopt;
  auto close = s.rfind(')');
  if (close == std::string::npos) return std::nullopt;
  std::vector<std::string_view> fields;
  std::string_view rest(s);
  rest.remove_prefix(close + 2);
  while (!rest.empty()) {
    auto sp = rest.find(' ');
    fields.push_back(rest.substr(0, sp));
    if (sp == std::string_view::npos) break;
    rest.remove_prefix(sp + 1);
  }
  // fields[0] is field 3 (state); utime and stime are fields 14 and 15.
  if (fields.size() < 13) return std::nullopt;
  unsigned long long ut = 0, st = 0;
  std::from_chars(fields[11].data(), fields[11].data() + fields[11].size(), ut);
  std::from_chars(fields[12].data(), fields[12].data() + fields[12].size(), st);
  return double(ut + st) / double(sysconf(_SC_CLK_TCK));
}

std::optional<double> servers_cpu_seconds(const std::vector<pid_t>& pids) {
  double total = 0;
  for (pid_t p : pids) {
    auto s = process_cpu_seconds(p);
    if (!s) return std::nullopt;
    total += *s;
  }
  return total;
}

double self_cpu_seconds() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) + double(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

// splitmix64: a fast, good-enough generator for picking names and filling replayed hellos.
struct rng64 {
  std::uint64_t s;
  std::uint64_t operator()() noexcept {
    std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
};

outcome classify_io(const std::error_code& ec) {
  if (ec == errc::timed_out) return outcome::timeout;
  if (ec == errc::cancelled) return outcome::cancelled;
  if (ec == std::errc::connection_reset || ec == std::errc::broken_pipe) return outcome::reset;
  return outcome::io_error;
}

outcome classify_connect(const std::error_code& ec) {
  if (ec == errc::timed_out) return outcome::timeout;
  if (ec == errc::cancelled) return outcome::cancelled;
  if (ec == std::errc::connection_refused) return outcome::connect_refused;
  return outcome::connect_error;
}

// Everything the connections share. One ring thread, so no locking.
struct run_state {
  options opt;
  sockaddr_storage addr{};
  socklen_t addr_len = 0;
  SSL_CTX* ctx = nullptr;
  std::vector<tls::ssl_session_ptr> sessions;  // resume mode: sessions[i] is for names[i]
  std::optional<bench::client_hello_template> hello;
  unsigned flight_records = 0;  // records of the server's first flight (flood)

  std::stop_source stop;
  std::stop_source timer_stop;  // ends the measuring timer's wait early
  bool measuring = false;
  // Open loop: the window is over, so no attempt starts any more; those in flight finish
  // (or reach their deadline) and still count, since they were due inside the window.
  bool closing = false;  // set only with --rate
  clock::time_point measure_start{}, measure_end{};
  double client_cpu_start = 0, client_cpu_end = 0;
  std::optional<double> server_cpu_start, server_cpu_end;
  std::uint64_t attempts = 0;
  std::uint64_t successes = 0;
  std::uint64_t resumed = 0;
  std::uint64_t bytes_in = 0;
  // Open loop (--rate): attempt k is due at schedule_origin + k / rate.
  clock::time_point schedule_origin{};
  std::uint64_t scheduled = 0;
  std::uint64_t late_starts = 0;  // measured attempts started > 1 ms after they were due
  histogram latency;
  // Open loop: how late the load generator's timer woke for attempts whose connection was
  // free before they were due (a timer firing late, the generator's core taken by another
  // task). It is part of `latency` without being the server's doing, so a server is only
  // judged fairly when it stays small. Waiting for a free connection is the server's doing
  // and is not in here (late_starts counts it).
  histogram start_delay;
  struct trace_row {
    std::int64_t due_us, delay_us, latency_us;
    outcome result;
  };
  std::vector<trace_row> trace;  // --trace; bounded by max_trace_rows
  static constexpr std::size_t max_trace_rows = 5'000'000;  // 160 MB at most
  std::array<std::uint64_t, failure_kinds> failures{};
  std::array<std::string, failure_kinds> first_message{};
  bool finished = false;

  std::string_view name_at(std::size_t i) const {
    return opt.names.empty() ? std::string_view{} : std::string_view(opt.names[i]);
  }

  void begin_measure() {
    client_cpu_start = self_cpu_seconds();
    if (!opt.server_pids.empty()) server_cpu_start = servers_cpu_seconds(opt.server_pids);
    measure_start = clock::now();
    measuring = true;
  }
  clock::duration attempt_timeout() const {
    return std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(opt.timeout));
  }
  // When the next attempt of the open-loop schedule is due.
  clock::time_point next_due() const {
    return schedule_origin + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(double(scheduled) / opt.rate));
  }
  void end_measure() {
    if (finished) return;
    finished = true;
    measure_end = clock::now();
    measuring = false;
    client_cpu_end = self_cpu_seconds();
    if (!opt.server_pids.empty()) server_cpu_end = servers_cpu_seconds(opt.server_pids);
    timer_stop.request_stop();  // the window may end before its time (--count)
    if (opt.rate > 0)
      closing = true;
    else
      stop.request_stop();
  }
  // Whether an attempt counts. Closed loop: it ended inside the window. Open loop: it was
  // due inside the window, however late it ends; leaving out the attempts in flight when the
  // window closes would leave out the slowest ones.
  bool counts(clock::time_point due) const {
    if (opt.rate <= 0) return measuring;
    if (measure_start == clock::time_point{} || due < measure_start) return false;
    return !finished || due < measure_end;
  }
  void fail(outcome o, bool counted, std::string msg = {}) {
    auto k = static_cast<std::size_t>(o);
    if (k >= failure_kinds) return;
    if (counted) ++failures[k];
    if (first_message[k].empty() && !msg.empty()) first_message[k] = std::move(msg);
  }
};

// Opens a TCP socket that resets on close, so the client never piles up TIME_WAIT sockets
// over hundreds of thousands of short connections.
result<io::unique_fd> new_socket(const run_state& st) {
  io::unique_fd fd(::socket(st.addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return std::error_code(errno, std::system_category());
  int one = 1;
  ::setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  linger lg{1, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &lg, sizeof lg);
  return fd;
}

struct conn_buffers {
  std::vector<std::byte> in = std::vector<std::byte>(64 * 1024);
  std::vector<std::byte> out = std::vector<std::byte>(32 * 1024);
  std::vector<std::byte> hello;
  std::string response;
};

std::string ssl_error_text() {
  unsigned long e = ERR_peek_last_error();
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  return buf;
}

// Sends everything OpenSSL wrote into the memory BIO.
io::task<outcome> flush(int fd, BIO* wbio, conn_buffers& b, clock::time_point dl, std::stop_token tok,
                        std::vector<std::byte>* capture = nullptr) {
  while (BIO_ctrl_pending(wbio) > 0) {
    int n = BIO_read(wbio, b.out.data(), static_cast<int>(b.out.size()));
    if (n <= 0) break;
    std::span<const std::byte> s(b.out.data(), static_cast<std::size_t>(n));
    if (capture) capture->insert(capture->end(), s.begin(), s.end());
    while (!s.empty()) {
      auto r = co_await io::send(fd, s).deadline(dl).cancel_on(tok);
      if (!r) co_return classify_io(r.error());
      s = s.subspan(*r);
    }
  }
  co_return outcome::ok;
}

// Receives once and hands the bytes to OpenSSL.
io::task<outcome> fill(int fd, BIO* rbio, conn_buffers& b, clock::time_point dl, std::stop_token tok,
                       std::vector<std::byte>* capture = nullptr) {
  auto r = co_await io::recv(fd, b.in).deadline(dl).cancel_on(tok);
  if (!r) co_return classify_io(r.error());
  if (*r == 0) co_return outcome::eof;
  if (capture) capture->insert(capture->end(), b.in.begin(), b.in.begin() + static_cast<std::ptrdiff_t>(*r));
  BIO_write(rbio, b.in.data(), static_cast<int>(*r));
  co_return outcome::ok;
}

outcome classify_ssl(SSL* ssl, int rc, std::string* msg) {
  int err = SSL_get_error(ssl, rc);
  outcome o = outcome::tls_error;
  if (err == SSL_ERROR_SSL) {
    unsigned long e = ERR_peek_last_error();
    if (ERR_GET_LIB(e) == ERR_LIB_SSL && ERR_GET_REASON(e) >= SSL_AD_REASON_OFFSET) o = outcome::alert;
    *msg = ssl_error_text();
  } else if (err == SSL_ERROR_SYSCALL || err == SSL_ERROR_ZERO_RETURN) {
    o = outcome::eof;
  }
  ERR_clear_error();
  return o;
}

// Captured by the calibration handshake: the client's first flight and the server's answer.
struct capture {
  std::vector<std::byte> client_first;
  std::vector<std::byte> server_flight;
  bool resumed = false;
  int version = 0;
  std::string group;
  std::string cipher;
  int peer_key = 0;
};

// An SSL freed without a sent close_notify has its session marked not resumable by OpenSSL,
// which would spoil the ticket a priming connection just obtained; the client resets its
// connections instead of closing them, so it declares the shutdown done before the free.
struct quiet_ssl {
  tls::ssl_ptr p;
  ~quiet_ssl() {
    if (p) SSL_set_shutdown(p.get(), SSL_SENT_SHUTDOWN | SSL_RECEIVED_SHUTDOWN);
  }
  SSL* get() const noexcept { return p.get(); }
  explicit operator bool() const noexcept { return bool(p); }
};

struct ticket_slot {
  SSL_SESSION* session = nullptr;
};

int on_new_session(SSL* ssl, SSL_SESSION* sess) {
  auto* slot = static_cast<ticket_slot*>(SSL_get_app_data(ssl));
  if (!slot) return 0;
  if (slot->session) SSL_SESSION_free(slot->session);
  slot->session = sess;
  return 1;  // we keep the reference
}

// One real TLS connection: connect, handshake (offering `session` if set), optional HTTP
// request, optional wait for a ticket. `cap` records bytes for the calibration.
io::task<outcome> real_attempt(run_state& st, conn_buffers& b, std::string_view name, SSL_SESSION* session,
                               ticket_slot* want_ticket, capture* cap, std::string* msg, bool* reused_out = nullptr) {
  auto tok = st.stop.get_token();
  auto dl = clock::now() + st.attempt_timeout();
  auto fd_r = new_socket(st);
  if (!fd_r) {
    *msg = fd_r.error().message();
    co_return outcome::io_error;
  }
  io::unique_fd fd = std::move(*fd_r);
  auto c = co_await io::connect(fd.get(), reinterpret_cast<const sockaddr*>(&st.addr), st.addr_len).deadline(dl).cancel_on(tok);
  if (!c) {
    *msg = c.error().message();
    co_return classify_connect(c.error());
  }
  quiet_ssl ssl{tls::ssl_ptr(SSL_new(st.ctx))};
  if (!ssl) {
    *msg = ssl_error_text();
    co_return outcome::tls_error;
  }
  BIO* rbio = BIO_new(BIO_s_mem());
  BIO* wbio = BIO_new(BIO_s_mem());
  SSL_set_bio(ssl.get(), rbio, wbio);
  SSL_set_connect_state(ssl.get());
  std::string name_z(name);
  if (!name.empty()) {
    SSL_set_tlsext_host_name(ssl.get(), name_z.c_str());
    if (!st.opt.verify_ca.empty()) SSL_set1_host(ssl.get(), name_z.c_str());
  }
  if (session) {
    // A copy per connection: OpenSSL marks the session of a finished connection as used in
    // ways that stop later offers, and every resumed handshake here offers the same ticket.
    tls::ssl_session_ptr copy(SSL_SESSION_dup(session));
    if (!copy || SSL_set_session(ssl.get(), copy.get()) != 1) {
      *msg = "cannot copy the session";
      co_return outcome::tls_error;
    }
  }
  if (want_ticket) SSL_set_app_data(ssl.get(), want_ticket);

  bool first_flush = true;
  for (;;) {
    int rc = SSL_do_handshake(ssl.get());
    auto f = co_await flush(fd.get(), wbio, b, dl, tok, (cap && first_flush) ? &cap->client_first : nullptr);
    first_flush = false;
    if (f != outcome::ok) co_return f;
    if (rc == 1) break;
    if (SSL_get_error(ssl.get(), rc) != SSL_ERROR_WANT_READ) co_return classify_ssl(ssl.get(), rc, msg);
    auto r = co_await fill(fd.get(), rbio, b, dl, tok, cap ? &cap->server_flight : nullptr);
    if (r != outcome::ok) {
      if (r == outcome::eof) *msg = "server closed the connection during the handshake";
      co_return r;
    }
  }
  bool reused = SSL_session_reused(ssl.get()) == 1;
  if (cap) {
    cap->resumed = reused;
    cap->version = SSL_version(ssl.get());
    int g = SSL_get_negotiated_group(ssl.get());
    const char* gn = OBJ_nid2sn(g & ~TLSEXT_nid_unknown);
    cap->group = gn ? gn : std::to_string(g);
    cap->cipher = SSL_get_cipher_name(ssl.get());
    X509* peer = SSL_get0_peer_certificate(ssl.get());
    cap->peer_key = peer ? EVP_PKEY_get_base_id(X509_get0_pubkey(peer)) : 0;
  }
  if (session && !reused) {
    *msg = "the server did not accept the session ticket";
    co_return outcome::not_resumed;
  }
  if (reused_out) *reused_out = reused;

  if (st.opt.http) {
    std::string req = "GET / HTTP/1.1\r\nHost: " + (name.empty() ? st.opt.host : name_z) + "\r\nConnection: close\r\n\r\n";
    if (SSL_write(ssl.get(), req.data(), static_cast<int>(req.size())) <= 0) co_return classify_ssl(ssl.get(), -1, msg);
    auto f = co_await flush(fd.get(), wbio, b, dl, tok);
    if (f != outcome::ok) co_return f;
    b.response.clear();
    std::size_t need = std::string::npos;
    char tmp[16 * 1024];
    for (;;) {
      int n = SSL_read(ssl.get(), tmp, sizeof tmp);
      if (n > 0) {
        b.response.append(tmp, static_cast<std::size_t>(n));
        if (need == std::string::npos) {
          auto end = b.response.find("\r\n\r\n");
          if (end != std::string::npos) {
            if (b.response.rfind("HTTP/1.", 0) != 0) {
              *msg = "response is not HTTP/1.x";
              co_return outcome::http_error;
            }
            std::string lower;
            lower.reserve(end);
            for (std::size_t i = 0; i < end; ++i) lower.push_back(static_cast<char>(std::tolower(static_cast<unsigned char>(b.response[i]))));
            auto cl = lower.find("\r\ncontent-length:");
            std::size_t len = 0;
            if (cl != std::string::npos) len = std::strtoull(lower.c_str() + cl + 17, nullptr, 10);
            need = end + 4 + len;
          }
        }
        if (need != std::string::npos && b.response.size() >= need) break;
        continue;
      }
      int err = SSL_get_error(ssl.get(), n);
      if (err == SSL_ERROR_WANT_WRITE || err == SSL_ERROR_WANT_READ) {
        auto f2 = co_await flush(fd.get(), wbio, b, dl, tok);
        if (f2 != outcome::ok) co_return f2;
        if (err == SSL_ERROR_WANT_READ) {
          auto r = co_await fill(fd.get(), rbio, b, dl, tok);
          if (r == outcome::eof && need == std::string::npos && !b.response.empty()) break;
          if (r != outcome::ok) co_return r == outcome::eof ? outcome::http_error : r;
        }
        continue;
      }
      if (err == SSL_ERROR_ZERO_RETURN && !b.response.empty()) break;
      *msg = "connection ended before a complete HTTP response";
      ERR_clear_error();
      co_return outcome::http_error;
    }
    if (b.response.compare(0, 12, "HTTP/1.1 200") != 0 && b.response.compare(0, 12, "HTTP/1.0 200") != 0) {
      *msg = "HTTP status is not 200: " + b.response.substr(0, b.response.find('\r'));
      co_return outcome::http_error;
    }
  }

  if (want_ticket) {
    char tmp[4096];
    while (!want_ticket->session) {
      int n = SSL_read(ssl.get(), tmp, sizeof tmp);
      if (n > 0) continue;
      int err = SSL_get_error(ssl.get(), n);
      if (want_ticket->session) break;
      if (err != SSL_ERROR_WANT_READ) {
        *msg = "no session ticket before the connection ended";
        co_return classify_ssl(ssl.get(), n, msg);
      }
      auto f = co_await flush(fd.get(), wbio, b, dl, tok);
      if (f != outcome::ok) co_return f;
      auto r = co_await fill(fd.get(), rbio, b, dl, tok);
      if (r != outcome::ok) {
        *msg = "no session ticket from the server (are tickets enabled?)";
        co_return r;
      }
    }
  }
  co_return outcome::ok;
}

// Counts complete TLS records in a byte stream, stopping at `wanted`.
struct record_counter {
  std::array<std::byte, 5> hdr{};
  std::size_t hdr_have = 0;
  std::size_t body_left = 0;
  unsigned records = 0;
  bool alert = false;

  // Returns true once `wanted` records are complete (or an alert record started).
  bool feed(std::span<const std::byte> s, unsigned wanted) {
    while (!s.empty()) {
      if (hdr_have < 5) {
        std::size_t k = std::min(5 - hdr_have, s.size());
        std::memcpy(hdr.data() + hdr_have, s.data(), k);
        hdr_have += k;
        s = s.subspan(k);
        if (hdr_have < 5) return false;
        if (std::to_integer<int>(hdr[0]) == 21) {
          alert = true;
          return true;
        }
        body_left = (std::to_integer<std::size_t>(hdr[3]) << 8) | std::to_integer<std::size_t>(hdr[4]);
      }
      std::size_t k = std::min(body_left, s.size());
      body_left -= k;
      s = s.subspan(k);
      if (body_left == 0) {
        ++records;
        hdr_have = 0;
        if (records >= wanted) return true;
      }
    }
    return false;
  }
};

io::task<outcome> flood_attempt(run_state& st, conn_buffers& b, std::string_view name, rng64& rng, std::string* msg) {
  auto tok = st.stop.get_token();
  auto dl = clock::now() + st.attempt_timeout();
  b.hello.clear();
  st.hello->build(name, rng, b.hello);
  auto fd_r = new_socket(st);
  if (!fd_r) {
    *msg = fd_r.error().message();
    co_return outcome::io_error;
  }
  io::unique_fd fd = std::move(*fd_r);
  auto c = co_await io::connect(fd.get(), reinterpret_cast<const sockaddr*>(&st.addr), st.addr_len).deadline(dl).cancel_on(tok);
  if (!c) {
    *msg = c.error().message();
    co_return classify_connect(c.error());
  }
  std::span<const std::byte> out(b.hello);
  while (!out.empty()) {
    auto r = co_await io::send(fd.get(), out).deadline(dl).cancel_on(tok);
    if (!r) co_return classify_io(r.error());
    out = out.subspan(*r);
  }
  record_counter rc;
  for (;;) {
    auto r = co_await io::recv(fd.get(), b.in).deadline(dl).cancel_on(tok);
    if (!r) co_return classify_io(r.error());
    if (*r == 0) {
      *msg = "server closed the connection before its Finished";
      co_return outcome::eof;
    }
    st.bytes_in += *r;
    if (rc.feed(std::span<const std::byte>(b.in.data(), *r), st.flight_records)) break;
  }
  if (rc.alert) {
    *msg = "server sent an alert to the replayed ClientHello";
    co_return outcome::alert;
  }
  co_return outcome::ok;
}

io::task<void> worker(run_state& st, unsigned id) {
  conn_buffers b;
  rng64 rng{0x1234567ull * (id + 1) ^ static_cast<std::uint64_t>(clock::now().time_since_epoch().count())};
  auto tok = st.stop.get_token();
  while (!tok.stop_requested()) {
    // Open loop: an attempt due before the window closed still starts, however late, unless
    // the schedule is more than --timeout behind by then (an overloaded server would
    // otherwise keep the run going for as long as its backlog).
    if (st.closing && st.next_due() >= st.measure_end) break;
    if (st.closing && clock::now() > st.measure_end + st.attempt_timeout()) {
      for (auto due = st.next_due(); due < st.measure_end; due = st.next_due()) {
        ++st.scheduled;
        if (!st.counts(due)) continue;  // due during the warm-up
        ++st.attempts;
        st.fail(outcome::not_started, true);
      }
      break;
    }
    if (!st.closing && st.opt.count && st.successes >= st.opt.count) break;
    std::size_t pick = 0;
    if (st.opt.mode == run_mode::resume)
      pick = rng() % st.sessions.size();
    else if (!st.opt.names.empty())
      pick = rng() % st.opt.names.size();
    std::string msg;
    bool reused = false;
    auto t0 = clock::now();
    auto started = t0;
    if (st.opt.rate > 0) {
      // The next due time goes to whichever connection is free; when none was free in time,
      // the wait shows in the latency instead of silently lowering the offered load.
      const auto due = st.next_due();
      ++st.scheduled;
      const bool slept = due > t0;
      if (slept) {
        (void)co_await io::sleep_for(due - t0).cancel_on(tok);
        if (tok.stop_requested()) break;
        if (st.closing && due >= st.measure_end) break;
      } else if (t0 - due > std::chrono::milliseconds(1) && st.counts(due)) {
        ++st.late_starts;
      }
      t0 = due;
      started = slept ? clock::now() : due;  // the timer's lateness only (see start_delay)
    }
    outcome o;
    if (st.opt.mode == run_mode::flood)
      o = co_await flood_attempt(st, b, st.name_at(pick), rng, &msg);
    else
      o = co_await real_attempt(st, b, st.name_at(pick), st.opt.mode == run_mode::resume ? st.sessions[pick].get() : nullptr,
                                nullptr, nullptr, &msg, &reused);
    auto t1 = clock::now();
    if (o == outcome::cancelled) break;
    const bool counted = st.counts(t0);
    if (!counted) continue;
    ++st.attempts;
    if (st.opt.rate > 0) st.start_delay.record(static_cast<std::uint64_t>(duration_cast<nanoseconds>(started - t0).count()));
    if (!st.opt.trace.empty() && st.trace.size() < run_state::max_trace_rows) {
      auto to_us = [](clock::duration d) { return duration_cast<std::chrono::microseconds>(d).count(); };
      st.trace.push_back({to_us(t0 - st.measure_start), to_us(started - t0), to_us(t1 - t0), o});
    }
    if (o == outcome::ok) {
      st.latency.record(static_cast<std::uint64_t>(duration_cast<nanoseconds>(t1 - t0).count()));
      ++st.successes;
      if (reused) ++st.resumed;
      if (st.opt.count && st.successes >= st.opt.count) st.end_measure();
    } else {
      st.fail(o, counted, std::move(msg));
      // A refused connection fails at once; do not spin the core the server needs.
      if (o == outcome::connect_refused || o == outcome::connect_error)
        (void)co_await io::sleep_for(std::chrono::milliseconds(1)).cancel_on(tok);
    }
  }
}

io::task<void> timer(run_state& st) {
  auto tok = st.timer_stop.get_token();
  if (st.opt.warmup > 0)
    (void)co_await io::sleep_for(duration_cast<nanoseconds>(std::chrono::duration<double>(st.opt.warmup))).cancel_on(tok);
  if (tok.stop_requested()) co_return;
  st.begin_measure();
  (void)co_await io::sleep_for(duration_cast<nanoseconds>(std::chrono::duration<double>(st.opt.duration))).cancel_on(tok);
  st.end_measure();
}

// Gets one session per name for resume mode, `connections` at a time.
io::task<void> prime_sessions(run_state& st, std::size_t n, std::string* error) {
  st.sessions.resize(n);
  std::size_t next = 0;
  io::task_scope scope;
  std::string first_error;
  auto one = [&](unsigned) -> io::task<void> {
    conn_buffers b;
    while (next < n) {
      std::size_t i = next++;
      std::string msg;
      bool got = false;
      for (int attempt = 0; attempt < 3 && !got; ++attempt) {
        ticket_slot slot;
        auto o = co_await real_attempt(st, b, st.name_at(i), nullptr, &slot, nullptr, &msg);
        if (o == outcome::ok && slot.session) {
          st.sessions[i].reset(slot.session);
          got = true;
        } else if (slot.session) {
          SSL_SESSION_free(slot.session);
        }
        if (!got && first_error.empty())
          first_error = fmt::format("{} for '{}': {}", outcome_name(o), st.name_at(i), msg);
      }
    }
  };
  unsigned workers = static_cast<unsigned>(std::min<std::size_t>(st.opt.connections, n));
  for (unsigned w = 0; w < workers; ++w) scope.spawn(one(w));
  co_await scope.join();
  for (auto& s : st.sessions)
    if (!s) {
      *error = first_error.empty() ? "no session ticket obtained" : first_error;
      co_return;
    }
}

io::task<void> run_all(run_state& st) {
  st.schedule_origin = clock::now();
  io::task_scope scope;
  scope.spawn(timer(st));
  for (unsigned i = 0; i < st.opt.connections; ++i) scope.spawn(worker(st, i));
  co_await scope.join();
}

std::string json_escape(std::string_view s) {
  std::string o;
  for (char c : s) {
    if (c == '"' || c == '\\') {
      o += '\\';
      o += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      o += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
    } else {
      o += c;
    }
  }
  return o;
}

// Writes --trace: a header, then one line per measured attempt in the order they finished.
// Fails (false) when the file cannot be written.
bool write_trace(const run_state& st, const std::string& file) {
  std::ofstream out(file, std::ios::trunc);
  if (!out) return false;
  out << "# due_us start_delay_us latency_us result\n";
  for (const auto& r : st.trace)
    out << r.due_us << ' ' << r.delay_us << ' ' << r.latency_us << ' '
        << outcome_name(r.result) << '\n';
  if (st.trace.size() == run_state::max_trace_rows) out << "# truncated at " << run_state::max_trace_rows << " rows\n";
  out.flush();
  return static_cast<bool>(out);
}

int write_plot(const run_state& st, const std::string& file) {
  char data_path[] = "/tmp/handshake-bench-plot-XXXXXX";
  int dfd = mkstemp(data_path);
  if (dfd < 0) return -1;
  std::string data;
  std::uint64_t total = st.latency.count(), cum = 0;
  // Block 0: share of handshakes per bucket; block 1: percentile spectrum.
  // The histogram's 128 buckets per octave are too fine to read: draw 8 per octave.
  std::vector<std::pair<long, std::uint64_t>> coarse;
  st.latency.for_each_bucket([&](std::uint64_t lo, std::uint64_t hi, std::uint64_t n) {
    long bin = static_cast<long>(std::floor(8.0 * std::log2((double(lo) + double(hi)) / 2.0 + 1.0)));
    if (coarse.empty() || coarse.back().first != bin) coarse.emplace_back(bin, 0);
    coarse.back().second += n;
  });
  for (auto [bin, n] : coarse)
    data += fmt::format("{:.3f} {:.6f}\n", std::exp2((double(bin) + 0.5) / 8.0) / 1e3, 100.0 * double(n) / double(total));
  data += "\n\n";
  st.latency.for_each_bucket([&](std::uint64_t, std::uint64_t hi, std::uint64_t n) {
    double before = double(cum) / double(total);
    cum += n;
    data += fmt::format("{:.6f} {:.3f}\n", 1.0 / (1.0 - before), double(std::min(hi, st.latency.max())) / 1e3);
  });
  if (::write(dfd, data.data(), data.size()) != static_cast<ssize_t>(data.size())) {
    ::close(dfd);
    ::unlink(data_path);
    return -1;
  }
  ::close(dfd);
  std::string title = fmt::format("{} {} handshakes, {} connections{}", st.successes, mode_name(st.opt.mode),
                                  st.opt.connections, st.opt.label.empty() ? "" : " - " + st.opt.label);
  std::string script = fmt::format(
      "set terminal pngcairo size 1200,500 font ',10'\n"
      "set output '{0}'\n"
      "set multiplot layout 1,2 title '{1}'\n"
      "set logscale x\nset grid\n"
      "set xlabel 'latency (us)'\nset ylabel '% of handshakes'\n"
      "set format x '%g'\n"
      "plot '{2}' index 0 using 1:2 with impulses lw 6 notitle\n"
      "set xlabel 'percentile'\nset ylabel 'latency (us)'\nunset logscale y\n"
      "set xtics ('0%%' 1, '50%%' 2, '90%%' 10, '99%%' 100, '99.9%%' 1000, '99.99%%' 10000, '99.999%%' 100000)\n"
      "plot '{2}' index 1 using 1:2 with steps lw 2 notitle\n"
      "unset multiplot\n",
      file, title, data_path);
  FILE* p = ::popen("gnuplot 2>&1", "w");
  if (!p) {
    ::unlink(data_path);
    return -1;
  }
  std::fputs(script.c_str(), p);
  int rc = ::pclose(p);
  ::unlink(data_path);
  return (rc == 0) ? 0 : -1;
}

}  // namespace

int main(int argc, char** argv) {
  options opt = parse_args(argc, argv);

  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  for (pid_t p : opt.server_pids)
    if (!process_cpu_seconds(p)) fatal(fmt::format("--server-pid {}: no such process (cannot read /proc/{}/stat)", p, p));
  if (!opt.plot.empty() && std::system("command -v gnuplot >/dev/null 2>&1") != 0)
    fatal("--plot needs gnuplot (Debian: apt-get install gnuplot-nox)");

  run_state st;
  st.opt = opt;
  {
    addrinfo hints{};
    hints.ai_socktype = SOCK_STREAM;
    addrinfo* res = nullptr;
    int rc = getaddrinfo(opt.host.c_str(), std::to_string(opt.port).c_str(), &hints, &res);
    if (rc != 0 || !res) fatal(fmt::format("cannot resolve '{}': {}", opt.host, gai_strerror(rc)));
    std::memcpy(&st.addr, res->ai_addr, res->ai_addrlen);
    st.addr_len = res->ai_addrlen;
    freeaddrinfo(res);
  }

  tls::ssl_ctx_ptr ctx(SSL_CTX_new(TLS_client_method()));
  if (!ctx) fatal("cannot create an OpenSSL context");
  SSL_CTX_set_min_proto_version(ctx.get(), TLS1_3_VERSION);
  SSL_CTX_set_max_proto_version(ctx.get(), TLS1_3_VERSION);
  if (SSL_CTX_set1_groups_list(ctx.get(), "X25519") != 1) fatal("this OpenSSL has no X25519");
  SSL_CTX_set_session_cache_mode(ctx.get(), SSL_SESS_CACHE_CLIENT | SSL_SESS_CACHE_NO_INTERNAL_STORE);
  SSL_CTX_sess_set_new_cb(ctx.get(), on_new_session);
  if (!opt.verify_ca.empty()) {
    if (SSL_CTX_load_verify_locations(ctx.get(), opt.verify_ca.c_str(), nullptr) != 1)
      fatal("cannot load --verify " + opt.verify_ca);
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(ctx.get(), SSL_VERIFY_NONE, nullptr);
  }
  st.ctx = ctx.get();

  io::ring ring(io::ring::options{.entries = 4096});

  // Calibration: one real handshake proves the server is there, shows what it negotiates and,
  // for the flood, yields the ClientHello to replay and the size of the server's flight.
  capture cap;
  {
    conn_buffers b;
    std::string msg;
    outcome o = ring.run(real_attempt(st, b, st.name_at(0), nullptr, nullptr, &cap, &msg));
    if (o == outcome::connect_refused || o == outcome::connect_error || o == outcome::timeout)
      fatal(fmt::format("server {}:{} not reachable ({}): {}", opt.host, opt.port, outcome_name(o), msg));
    if (o != outcome::ok)
      fatal(fmt::format("first handshake with {}:{} failed ({}): {}", opt.host, opt.port, outcome_name(o),
                        msg.empty() ? "no detail" : msg));
    if (cap.version != TLS1_3_VERSION) fatal("the server did not negotiate TLS 1.3");
  }
  std::vector<std::string> warnings;
  if (cap.group != "X25519") warnings.push_back("negotiated group is " + cap.group + ", not X25519");
  if (cap.peer_key != EVP_PKEY_EC) warnings.push_back("the server's certificate key is not ECDSA");

  if (opt.mode == run_mode::flood) {
    auto h = bench::client_hello_template::parse(cap.client_first);
    if (!h) fatal("could not parse the captured ClientHello");
    if (!h->has_x25519_share()) fatal("the captured ClientHello has no X25519 key share");
    st.hello = std::move(*h);
    record_counter rc;
    rc.feed(cap.server_flight, 1000);
    if (rc.hdr_have != 0 || rc.records < 2) fatal("could not delimit the server's first flight");
    // A HelloRetryRequest would make the replay pointless: its random is a fixed value.
    static constexpr unsigned char hrr[8] = {0xCF, 0x21, 0xAD, 0x74, 0xE5, 0x9A, 0x61, 0x11};
    if (cap.server_flight.size() > 19 && std::memcmp(cap.server_flight.data() + 11, hrr, 8) == 0)
      fatal("the server answered with a HelloRetryRequest; the flood needs a one-round-trip handshake");
    st.flight_records = rc.records;
  }

  if (opt.mode == run_mode::resume) {
    std::size_t n = std::max<std::size_t>(1, std::min<std::size_t>(opt.sessions, opt.names.size()));
    std::string error;
    ring.run(prime_sessions(st, n, &error));
    if (!error.empty()) fatal("resume mode: could not get a session ticket: " + error);
  }

  ring.run(run_all(st));
  if (!st.finished) st.end_measure();

  double secs = std::chrono::duration<double>(st.measure_end - st.measure_start).count();
  double rate = secs > 0 ? double(st.successes) / secs : 0;
  double client_cpu = st.client_cpu_end - st.client_cpu_start;
  std::optional<double> server_cpu;
  if (st.server_cpu_start && st.server_cpu_end) server_cpu = *st.server_cpu_end - *st.server_cpu_start;
  else if (!opt.server_pids.empty()) warnings.push_back("the server process went away during the run");
  std::optional<double> per_server_cpu;
  if (server_cpu && *server_cpu > 0) per_server_cpu = double(st.successes) / *server_cpu;
  auto us = [&](double p) { return double(st.latency.value_at(p)) / 1e3; };
  std::uint64_t failed = 0;
  for (auto f : st.failures) failed += f;

  auto delay_us = [&](double p) { return double(st.start_delay.value_at(p)) / 1e3; };
  if (opt.json) {
    const std::string delay_json =
        opt.rate > 0 && st.start_delay.count()
            ? fmt::format("{{\"p50\":{:.1f},\"p99\":{:.1f},\"max\":{:.1f}}}", delay_us(50), delay_us(99),
                          double(st.start_delay.max()) / 1e3)
            : std::string("null");
    std::string errors;
    for (std::size_t k = 0; k < failure_kinds; ++k)
      if (st.failures[k])
        errors += fmt::format("{}\"{}\":{}", errors.empty() ? "" : ",", outcome_name(static_cast<outcome>(k)), st.failures[k]);
    std::string first;
    for (std::size_t k = 0; k < failure_kinds; ++k)
      if (st.failures[k] && !st.first_message[k].empty())
        first += fmt::format("{}\"{}\":\"{}\"", first.empty() ? "" : ",", outcome_name(static_cast<outcome>(k)),
                             json_escape(st.first_message[k]));
    std::string warn;
    for (const auto& w : warnings) warn += fmt::format("{}\"{}\"", warn.empty() ? "" : ",", json_escape(w));
    fmt::print(
        "{{\"label\":\"{}\",\"mode\":\"{}\",\"http\":{},\"host\":\"{}\",\"port\":{},\"connections\":{},\"names\":{},"
        "\"rate\":{},\"late_starts\":{},\"seconds\":{:.3f},\"attempts\":{},\"handshakes\":{},\"resumed\":{},\"failures\":{},\"handshakes_per_s\":{:.1f},"
        "\"latency_us\":{{\"p50\":{:.1f},\"p90\":{:.1f},\"p99\":{:.1f},\"p99_9\":{:.1f},\"max\":{:.1f},\"mean\":{:.1f}}},"
        "\"start_delay_us\":{},"
        "\"errors\":{{{}}},\"first_error\":{{{}}},\"client_cpu_s\":{:.3f},\"client_cpu_share\":{:.3f},"
        "\"server_cpu_s\":{},\"server_cpu_share\":{},\"handshakes_per_server_cpu_s\":{},"
        "\"negotiated\":{{\"cipher\":\"{}\",\"group\":\"{}\"}},\"flight_records\":{},\"warnings\":[{}]}}\n",
        json_escape(opt.label), mode_name(opt.mode), opt.http ? "true" : "false", json_escape(opt.host), opt.port,
        opt.connections, opt.names.size(), opt.rate > 0 ? fmt::format("{:.1f}", opt.rate) : "null", st.late_starts, secs,
        st.attempts, st.successes, st.resumed, failed, rate, us(50), us(90), us(99),
        us(99.9), double(st.latency.max()) / 1e3, st.latency.mean() / 1e3, delay_json, errors, first, client_cpu,
        secs > 0 ? client_cpu / secs : 0, server_cpu ? fmt::format("{:.3f}", *server_cpu) : "null",
        server_cpu && secs > 0 ? fmt::format("{:.3f}", *server_cpu / secs) : "null",
        per_server_cpu ? fmt::format("{:.1f}", *per_server_cpu) : "null", json_escape(cap.cipher), json_escape(cap.group),
        st.flight_records, warn);
  } else {
    fmt::print("handshake-bench{}: mode={}{} target={}:{} connections={} names={} measured={:.2f}s\n",
               opt.label.empty() ? "" : " [" + opt.label + "]", mode_name(opt.mode), opt.http ? "+http" : "", opt.host,
               opt.port, opt.connections, std::max<std::size_t>(opt.names.size(), 1), secs);
    fmt::print("  negotiated      {} {}{}\n", cap.cipher, cap.group,
               opt.mode == run_mode::flood ? fmt::format(", server flight {} records", st.flight_records) : "");
    if (opt.rate > 0)
      fmt::print("  offered         {:.1f}/s open loop, {} starts late by > 1 ms (no free connection)\n", opt.rate,
                 st.late_starts);
    if (opt.rate > 0 && st.start_delay.count())
      fmt::print("  start delay(us) p50 {:.1f}  p99 {:.1f}  max {:.1f} (the load generator's own lateness, inside latency)\n",
                 delay_us(50), delay_us(99), double(st.start_delay.max()) / 1e3);
    fmt::print("  handshakes      {} ({:.1f}/s){}\n", st.successes, rate,
               opt.mode == run_mode::resume ? fmt::format(", {} resumed", st.resumed) : "");
    fmt::print("  latency (us)    p50 {:.1f}  p90 {:.1f}  p99 {:.1f}  p99.9 {:.1f}  max {:.1f}  mean {:.1f}\n", us(50),
               us(90), us(99), us(99.9), double(st.latency.max()) / 1e3, st.latency.mean() / 1e3);
    std::string errors;
    for (std::size_t k = 0; k < failure_kinds; ++k)
      if (st.failures[k]) errors += fmt::format(" {}={}", outcome_name(static_cast<outcome>(k)), st.failures[k]);
    fmt::print("  failures       {}\n", errors.empty() ? " none" : errors);
    for (std::size_t k = 0; k < failure_kinds; ++k)
      if (st.failures[k] && !st.first_message[k].empty())
        fmt::print("    first {}: {}\n", outcome_name(static_cast<outcome>(k)), st.first_message[k]);
    fmt::print("  client cpu      {:.2f} s ({:.0f}% of one core)\n", client_cpu, secs > 0 ? 100 * client_cpu / secs : 0);
    if (server_cpu)
      fmt::print("  server cpu      {:.2f} s ({:.0f}% of one core) -> {:.1f} handshakes per server CPU-second\n", *server_cpu,
                 secs > 0 ? 100 * *server_cpu / secs : 0, per_server_cpu.value_or(0));
    for (const auto& w : warnings) fmt::print("  warning: {}\n", w);
  }

  if (!opt.trace.empty() && !write_trace(st, opt.trace)) fatal("cannot write " + opt.trace);
  if (!opt.plot.empty()) {
    if (st.latency.count() == 0) {
      fmt::print(stderr, "handshake-bench: no latency to plot\n");
    } else if (write_plot(st, opt.plot) != 0) {
      fatal("gnuplot failed to write " + opt.plot);
    }
  }
  if (st.successes == 0) {
    fmt::print(stderr, "handshake-bench: no handshake succeeded\n");
    return 1;
  }
  return 0;
}
