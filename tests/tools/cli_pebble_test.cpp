// The letsencrypt command-line tool against a real ACME CA (Pebble on loopback).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdio>
#include <filesystem>
#include <fstream>

#include "pebble_fixture.hpp"

using namespace letsencrypt;

namespace {

struct run_result {
  int status = -1;
  std::string out;
};

// Runs a shell command line, capturing stdout and stderr together.
run_result run(const std::string& cmd) {
  run_result r;
  FILE* p = ::popen((cmd + " 2>&1 </dev/null").c_str(), "r");
  if (!p) return r;
  std::array<char, 4096> buf;
  while (std::size_t n = std::fread(buf.data(), 1, buf.size(), p)) r.out.append(buf.data(), n);
  int st = ::pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
  return r;
}

class cli_pebble : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!test::pebble_ca::installed()) GTEST_SKIP() << "pebble not installed: apt-get install pebble";
    auto ca = test::pebble_ca::start();
    ASSERT_TRUE(ca) << ca.error().message();
    ca_ = std::move(*ca);
    dir_ = std::filesystem::temp_directory_path() / ("le-cli-" + std::to_string(::getpid()));
    std::filesystem::remove_all(dir_);
    std::filesystem::create_directories(dir_);
    std::ofstream(dir_ / "https-ca.pem") << ca_->https_ca_pem();
    std::ofstream(dir_ / "root.pem") << ca_->issuing_root_pem();
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }

  std::string base(const std::string& sub) const {
    return std::string(LE_CLI) + " " + sub + " --directory " + ca_->directory_url() + " --ca-root " +
           (dir_ / "https-ca.pem").string() + " --cache " + (dir_ / "cache").string();
  }

  std::unique_ptr<test::pebble_ca> ca_;
  std::filesystem::path dir_;
};

TEST_F(cli_pebble, obtain_by_http01_and_tls_alpn01_then_account_revoke_and_rollover) {
  auto r = run(base("obtain") + " --domains a.test,b.test --challenge http-01 --listen 127.0.0.1 --http-port " +
               std::to_string(ca_->http_port()) + " --email admin@a.test --agree-tos");
  ASSERT_EQ(r.status, 0) << r.out;
  // The CA picks one of the names for the subject.
  EXPECT_TRUE(r.out.find("subject: /CN=a.test") != std::string::npos ||
              r.out.find("subject: /CN=b.test") != std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("issuer:  /CN=Pebble Intermediate CA"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("expires: "), std::string::npos) << r.out;

  r = run(base("obtain") + " --domains c.test --challenge tls-alpn-01 --listen 127.0.0.1 --tls-port " +
          std::to_string(ca_->tls_port()));
  ASSERT_EQ(r.status, 0) << r.out;  // the account from the cache is reused: no ToS question
  EXPECT_NE(r.out.find("subject: /CN=c.test"), std::string::npos) << r.out;

  // The journal holds both certificates, and the CLI's own journal tool can read it.
  r = run(std::string(LE_CLI) + " journal verify " + (dir_ / "cache").string());
  EXPECT_EQ(r.status, 0) << r.out;

  r = run(base("account") + " show");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("status: valid"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("contact: mailto:admin@a.test"), std::string::npos) << r.out;
  EXPECT_EQ(r.out.find("PRIVATE KEY"), std::string::npos);

  r = run(base("revoke") + " --domain a.test --reason 4");
  EXPECT_EQ(r.status, 0) << r.out;
  // Revoking again is refused by the CA; the problem document is printed on one line.
  r = run(base("revoke") + " --domain a.test");
  EXPECT_NE(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("error: "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("lready"), std::string::npos) << r.out;  // alreadyRevoked

  r = run(base("revoke") + " --domain c.test --with-cert-key");
  EXPECT_EQ(r.status, 0) << r.out;

  r = run(base("account") + " rollover");
  ASSERT_EQ(r.status, 0) << r.out;
  r = run(base("account") + " show");  // works with the new key from the cache
  ASSERT_EQ(r.status, 0) << r.out;
}

TEST_F(cli_pebble, obtain_wildcard_by_dns01_through_a_hook) {
  auto hook = dir_ / "dns-hook";
  std::ofstream(hook) << "#!/bin/sh\n"
                         "# present|cleanup NAME VALUE: set the TXT record in the CA's test DNS\n"
                         "if [ \"$1\" = present ]; then\n"
                         "  curl -sf -X POST -d \"{\\\"host\\\":\\\"$2.\\\",\\\"value\\\":\\\"$3\\\"}\" "
                      << ca_->challtestsrv_url() << "/set-txt\n"
                         "else\n"
                         "  curl -sf -X POST -d \"{\\\"host\\\":\\\"$2.\\\"}\" "
                      << ca_->challtestsrv_url() << "/clear-txt\n"
                         "fi\n";
  ::chmod(hook.c_str(), 0755);
  auto r = run(base("obtain") + " --domains '*.wild.test' --challenge dns-01 --dns-hook " + hook.string() +
               " --agree-tos");
  ASSERT_EQ(r.status, 0) << r.out;
  EXPECT_NE(r.out.find("subject: /CN=*.wild.test"), std::string::npos) << r.out;
}

TEST_F(cli_pebble, errors_are_one_readable_line_and_non_zero) {
  // A name the CA refuses (not a valid public name).
  auto r = run(base("obtain") + " --domains bad_name.test --challenge http-01 --listen 127.0.0.1 --http-port " +
               std::to_string(ca_->http_port()) + " --agree-tos");
  EXPECT_NE(r.status, 0);
  EXPECT_NE(r.out.find("error: "), std::string::npos) << r.out;
  r = run(std::string(LE_CLI) + " obtain --help");
  EXPECT_EQ(r.status, 0);
  EXPECT_NE(r.out.find("--domains"), std::string::npos);
  r = run(std::string(LE_CLI) + " obtain --nonsense");
  EXPECT_EQ(r.status, 2);
  r = run(std::string(LE_CLI) + " frobnicate");
  EXPECT_EQ(r.status, 2);
}

}  // namespace
