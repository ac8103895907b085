// Ring round trip (nop submit/complete) and loopback echo, for comparing later changes.
#include <benchmark/benchmark.h>

#include "letsencrypt/io/net.hpp"
#include "letsencrypt/io/ops.hpp"
#include "letsencrypt/io/scope.hpp"

using namespace letsencrypt;
using namespace std::chrono_literals;

static void bm_nop_round_trip(benchmark::State& state) {
  io::ring r;
  const int batch = static_cast<int>(state.range(0));
  for (auto _ : state) {
    auto t = [&]() -> io::task<void> {
      std::vector<io::task<void>> ts;
      for (int i = 0; i < batch; ++i) ts.push_back([]() -> io::task<void> { (void)co_await io::nop(); }());
      co_await io::when_all(std::move(ts));
    };
    r.run(t());
  }
  state.SetItemsProcessed(state.iterations() * batch);
}
BENCHMARK(bm_nop_round_trip)->Arg(1)->Arg(32);

static void bm_loopback_echo(benchmark::State& state) {
  io::ring r;
  auto lfd = io::listen_tcp("127.0.0.1", 0);
  auto port = *io::local_port(lfd->get());
  const std::size_t size = static_cast<std::size_t>(state.range(0));
  io::unique_fd server_fd, client_fd;
  auto setup = [&]() -> io::task<void> {
    auto [c, s] = co_await io::when_all(io::connect_tcp("127.0.0.1", port, 1s), [&]() -> io::task<result<io::unique_fd>> {
      co_return co_await io::accept(lfd->get());
    }());
    client_fd = std::move(*c);
    server_fd = std::move(*s);
  };
  r.run(setup());
  std::vector<std::byte> msg(size), sbuf(size), cbuf(size);
  auto exchange = [&]() -> io::task<void> {
    auto server = [&]() -> io::task<void> {
      std::size_t got = 0;
      while (got < size) got += *co_await io::recv(server_fd.get(), std::span(sbuf).subspan(got));
      (void)co_await io::send(server_fd.get(), std::span<const std::byte>(sbuf));
    };
    auto client = [&]() -> io::task<void> {
      (void)co_await io::send(client_fd.get(), std::span<const std::byte>(msg));
      std::size_t got = 0;
      while (got < size) got += *co_await io::recv(client_fd.get(), std::span(cbuf).subspan(got));
    };
    co_await io::when_all(server(), client());
  };
  for (auto _ : state) r.run(exchange());
  state.SetBytesProcessed(state.iterations() * std::int64_t(size) * 2);
}
BENCHMARK(bm_loopback_echo)->Arg(64)->Arg(16384);

BENCHMARK_MAIN();
