#include <gtest/gtest.h>

#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <sstream>

#include <fmt/format.h>

#include "../../tools/cli/journal.hpp"
#include "fixtures.hpp"
#include "letsencrypt/io/ring.hpp"
#include "letsencrypt/store/journal.hpp"

using namespace letsencrypt;
using namespace letsencrypt::store;

namespace {

struct run_result {
  int rc;
  std::string out, err;
};

std::string slurp(const std::string& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// Runs journal_command in this process with stdout/stderr captured.
run_result run(const store_test::temp_dir& d, std::vector<std::string> args) {
  args.insert(args.begin(), "journal");
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  std::fflush(stdout);
  std::fflush(stderr);
  const int saved_out = ::dup(1), saved_err = ::dup(2);
  const auto out_path = d.file("stdout"), err_path = d.file("stderr");
  int o = ::open(out_path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
  int e = ::open(err_path.c_str(), O_RDWR | O_CREAT | O_TRUNC, 0600);
  ::dup2(o, 1);
  ::dup2(e, 2);
  int rc = cli::journal_command(static_cast<int>(argv.size()), argv.data());
  std::fflush(stdout);
  std::fflush(stderr);
  ::dup2(saved_out, 1);
  ::dup2(saved_err, 2);
  ::close(saved_out);
  ::close(saved_err);
  ::close(o);
  ::close(e);
  return {rc, slurp(out_path), slurp(err_path)};
}

}  // namespace

TEST(cli, help_and_usage) {
  store_test::temp_dir d;
  auto h = run(d, {"--help"});
  EXPECT_EQ(h.rc, 0);
  EXPECT_NE(h.out.find("import-go"), std::string::npos);
  EXPECT_EQ(run(d, {}).rc, 2);
  EXPECT_EQ(run(d, {"frobnicate", "x"}).rc, 2);
}

TEST(cli, dump_verify_export_compact_never_print_keys) {
  store_test::temp_dir d;
  const auto path = d.file("cache");
  auto cert = store_test::cert_record_for({"a.example", "b.example"});
  const auto acct_key = store_test::make_key_pem();
  {
    auto j = journal::open(path);
    ASSERT_TRUE(j);
    io::ring r;
    ASSERT_TRUE(r.run((*j)->append(account_record{acct_key, "https://ca/a/1", {}, true})));
    ASSERT_TRUE(r.run((*j)->append(cert)));
    ASSERT_TRUE(r.run((*j)->append(cert)));
  }
  auto dump = run(d, {"dump", path});
  EXPECT_EQ(dump.rc, 0) << dump.err;
  EXPECT_NE(dump.out.find("names=[a.example, b.example]"), std::string::npos) << dump.out;
  EXPECT_NE(dump.out.find(fmt::format("key: <redacted, {} bytes>", cert.key_pem.size())),
            std::string::npos) << dump.out;
  EXPECT_EQ(dump.out.find("PRIVATE KEY"), std::string::npos);
  EXPECT_EQ(dump.out.find("BEGIN"), std::string::npos);

  auto v = run(d, {"verify", path});
  EXPECT_EQ(v.rc, 0) << v.err;
  EXPECT_NE(v.out.find("3 records"), std::string::npos) << v.out;

  auto ex = run(d, {"export", path});
  EXPECT_EQ(ex.rc, 0);
  auto st = unmarshal(ex.out);
  ASSERT_TRUE(st);
  EXPECT_EQ(st->certs.at("a.example")->key_pem, cert.key_pem);

  auto c = run(d, {"compact", path});
  EXPECT_EQ(c.rc, 0) << c.err;
  EXPECT_EQ(run(d, {"verify", path}).rc, 0);
  auto j = journal::open(path);
  ASSERT_TRUE(j);
  EXPECT_TRUE((*j)->state() == *st);
  // Locked while open: compact refuses.
  auto busy = run(d, {"compact", path});
  EXPECT_EQ(busy.rc, 1);
  EXPECT_NE(busy.err.find("locked"), std::string::npos) << busy.err;
}

TEST(cli, verify_names_the_offset_of_corruption) {
  store_test::temp_dir d;
  const auto path = d.file("cache");
  {
    auto j = journal::open(path);
    ASSERT_TRUE(j);
    io::ring r;
    for (int k = 0; k < 3; ++k)
      ASSERT_TRUE(r.run((*j)->append(rate_limit_record{"b" + std::to_string(k), 1.0, {}})));
  }
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekp(static_cast<std::streamoff>(journal_magic.size() + record_header_size + 2));
  f.put('\x7f');
  f.close();
  auto v = run(d, {"verify", path});
  EXPECT_EQ(v.rc, 1);
  EXPECT_NE(v.err.find("offset " + std::to_string(journal_magic.size())), std::string::npos) << v.err;
  EXPECT_NE(run(d, {"dump", path}).rc, 0);
}

TEST(cli, import_go_cache_into_new_journal) {
  store_test::temp_dir d;
  auto c = store_test::make_cert({"example.org"});
  auto esc = [](const std::string& s) {
    std::string o;
    for (char ch : s) o += ch == '\n' ? std::string("\\n") : std::string(1, ch);
    return o;
  };
  const auto go = d.file("letsencrypt.cache");
  {
    std::ofstream out(go);
    out << "{\n\t\"Email\": \"\",\n\t\"Reg\": {\n\t\t\"Body\": {\n\t\t\t\"resource\": \"reg\",\n\t\t\t\"id\": 7,\n"
        << "\t\t\t\"contact\": null,\n\t\t\t\"agreement\": \"https://tos\"\n\t\t},\n"
        << "\t\t\"URI\": \"https://acme/reg/7\",\n\t\t\"NewAuthzURL\": \"\",\n\t\t\"TosURL\": \"\"\n\t},\n"
        << "\t\"Key\": \"" << esc(store_test::make_key_pem("P-384", true)) << "\",\n\t\"Hosts\": null,\n"
        << "\t\"Certs\": {\n\t\t\"example.org\": {\n\t\t\t\"Cert\": \"" << esc(c.chain_pem)
        << "\",\n\t\t\t\"Key\": \"" << esc(c.key_pem) << "\"\n\t\t}\n\t}\n}";
  }
  const auto path = d.file("journal");
  auto im = run(d, {"import-go", go, path});
  ASSERT_EQ(im.rc, 0) << im.err;
  EXPECT_EQ(im.out.find("BEGIN"), std::string::npos);
  auto j = journal::open(path);
  ASSERT_TRUE(j);
  const auto& st = (*j)->state();
  ASSERT_TRUE(st.account);
  EXPECT_EQ(st.account->url, "https://acme/reg/7");
  EXPECT_TRUE(st.account->tos_agreed);
  EXPECT_FALSE(st.hosts);
  ASSERT_EQ(st.certs.count("example.org"), 1u);
  EXPECT_EQ(st.certs.at("example.org")->not_after.time_since_epoch().count(), c.not_after);
  j->reset();
  // A second import into a journal with state is refused.
  EXPECT_EQ(run(d, {"import-go", go, path}).rc, 1);
}
