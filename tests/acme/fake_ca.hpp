// An in-memory ACME CA for client tests: verifies every JWS (signature, nonce, url, kid),
// keeps accounts, orders, authorizations and challenges, checks the key authorization the
// test's solver presented, and issues real certificates from its own CA key.
#pragma once

#include <chrono>
#include <openssl/core_names.h>
#include <openssl/hmac.h>
#include <openssl/param_build.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <simdjson.h>

#include <functional>
#include <map>
#include <set>
#include <string>

#include "letsencrypt/acme/client.hpp"
#include "letsencrypt/acme/csr.hpp"
#include "letsencrypt/acme/jws.hpp"
#include "letsencrypt/acme/types.hpp"
#include "letsencrypt/io/ops.hpp"
#include "test_util.hpp"

namespace acme_test {

namespace acme = letsencrypt::acme;

class fake_ca {
 public:
  // Knobs.
  std::string base = "https://ca.test";
  std::string tos = "https://ca.test/tos";
  bool eab_required = false;
  std::map<std::string, std::string> eab_keys;  // kid -> raw HMAC key
  std::vector<std::string> profiles;            // advertised in meta.profiles
  bool renewal_info = true;
  int reject_nonces = 0;                        // answer badNonce to the next N signed requests
  int rate_limit_orders = 0;                    // answer rateLimited to the next N newOrders
  int pending_polls = 2;                        // an answered authz stays pending this many GETs
  bool fail_validation = false;                 // challenges become invalid
  bool hang = false;                            // every request waits until cancelled
  int alternates = 1;                           // Link rel="alternate" chains offered
  int busy_cert_downloads = 0;                  // answer 503 (Retry-After: 1) to the next N
  // When >= 0: finalize answers "processing" with this Retry-After (seconds), and the order
  // stays processing until that time has passed.
  int finalize_retry_after = -1;
  std::string leave_invalid_json_at;            // path prefix whose answer is garbage
  // What the solver presented: challenge type + token -> key authorization. The test's
  // solver fills it; validation checks it against the account's real thumbprint.
  std::map<std::string, std::string> presented;

  // Observations.
  int requests = 0;
  int bad_nonces_sent = 0;
  int early_order_polls = 0;  // order polls while processing, before the Retry-After passed
  std::vector<std::string> order_payloads;
  std::set<std::string> revoked_serials;

  fake_ca() {
    ca_key_ = EVP_EC_gen("P-256");
    ca_cert_ = make_ca_cert();
  }
  ~fake_ca() {
    X509_free(ca_cert_);
    EVP_PKEY_free(ca_key_);
    for (auto& [k, a] : accounts_) EVP_PKEY_free(a.key);
  }
  fake_ca(const fake_ca&) = delete;
  fake_ca& operator=(const fake_ca&) = delete;

  std::string directory_url() const { return base + "/dir"; }
  std::string ca_pem() const { return pem_of(ca_cert_); }

  acme::http_fetch fetch() {
    return [this](acme::http_request r, std::stop_token stop) { return serve(this, std::move(r), std::move(stop)); };
  }

  acme::http_response handle(const acme::http_request& r) {
    ++requests;
    std::string path = r.url.starts_with(base) ? r.url.substr(base.size()) : r.url;
    if (!leave_invalid_json_at.empty() && path.starts_with(leave_invalid_json_at))
      return with_nonce(resp(200, "{\"status\": [1,2,", "application/json"));
    if (r.method == "GET" && path == "/dir") return resp(200, directory_json(), "application/json");
    if ((r.method == "HEAD" || r.method == "GET") && path == "/new-nonce") return with_nonce(resp(200, ""));
    if (r.method == "GET" && path.starts_with("/renewal-info/")) return renewal(path.substr(14));
    if (r.method != "POST") return resp(405, "");
    if (reject_nonces > 0) {
      --reject_nonces;
      ++bad_nonces_sent;
      return with_nonce(problem(400, "badNonce", "stale nonce"));
    }
    jws j;
    if (auto err = verify(r, j)) return with_nonce(*err);
    return with_nonce(route(path, j));
  }

 private:
  struct account {
    EVP_PKEY* key = nullptr;
    std::string jwk;
    std::string thumbprint;
    std::string status = "valid";
    std::string contact = "[]";
  };
  struct challenge {
    std::string type, token, status = "pending", authz;
  };
  struct authz {
    std::string name, status = "pending", order;
    bool wildcard = false;
    int polls_left = 0;
    std::vector<std::string> challenges;
    std::string account;
  };
  struct order {
    std::string status = "pending", account, profile, replaces, cert;
    std::vector<std::string> names, authzs;
    std::chrono::steady_clock::time_point processing_until{};
  };
  struct jws {
    std::string payload, url, kid, jwk;
    EVP_PKEY* key = nullptr;  // owned when from jwk
    ~jws() {
      if (owned) EVP_PKEY_free(key);
    }
    bool owned = false;
  };

  static letsencrypt::io::task<letsencrypt::result<acme::http_response>> serve(fake_ca* self, acme::http_request r,
                                                                               std::stop_token stop) {
    if (self->hang) {
      auto s = co_await letsencrypt::io::sleep_for(std::chrono::hours(1)).cancel_on(stop);
      if (!s) co_return s.error();
    }
    co_return self->handle(r);
  }

  static std::string pem_of(X509* x) {
    BIO* b = BIO_new(BIO_s_mem());
    PEM_write_bio_X509(b, x);
    char* d = nullptr;
    long n = BIO_get_mem_data(b, &d);
    std::string s(d, static_cast<std::size_t>(n));
    BIO_free(b);
    return s;
  }

  X509* make_ca_cert() {
    X509* x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set(X509_get_serialNumber(x), 1);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC, reinterpret_cast<const unsigned char*>("fake ca"), -1, -1, 0);
    X509_set_issuer_name(x, X509_get_subject_name(x));
    X509_set_pubkey(x, ca_key_);
    add_ext(x, x, NID_basic_constraints, "critical,CA:TRUE");
    add_ext(x, x, NID_subject_key_identifier, "hash");
    X509_sign(x, ca_key_, EVP_sha256());
    return x;
  }

  static void add_ext(X509* issuer, X509* x, int nid, const char* value) {
    X509V3_CTX ctx;
    X509V3_set_ctx_nodb(&ctx);
    X509V3_set_ctx(&ctx, issuer, x, nullptr, nullptr, 0);
    X509_EXTENSION* e = X509V3_EXT_conf_nid(nullptr, &ctx, nid, value);
    X509_add_ext(x, e, -1);
    X509_EXTENSION_free(e);
  }

  acme::http_response resp(int status, std::string body, std::string type = {}) {
    acme::http_response r;
    r.status = status;
    r.body = std::move(body);
    if (!type.empty()) r.headers.emplace_back("Content-Type", std::move(type));
    return r;
  }
  acme::http_response with_nonce(acme::http_response r) {
    std::string n = "nonce" + std::to_string(next_nonce_++);
    nonces_.insert(n);
    r.headers.emplace_back("Replay-Nonce", n);
    return r;
  }
  acme::http_response problem(int status, const std::string& type, const std::string& detail) {
    return resp(status,
                "{\"type\":\"urn:ietf:params:acme:error:" + type + "\",\"detail\":" + acme::json_string(detail) +
                    ",\"status\":" + std::to_string(status) + "}",
                "application/problem+json");
  }

  std::string directory_json() const {
    std::string prof;
    for (const auto& p : profiles) prof += (prof.empty() ? "" : ",") + acme::json_string(p) + ":\"desc\"";
    return "{\"newNonce\":\"" + base + "/new-nonce\",\"newAccount\":\"" + base + "/new-acct\",\"newOrder\":\"" + base +
           "/new-order\",\"revokeCert\":\"" + base + "/revoke\",\"keyChange\":\"" + base + "/key-change\"" +
           (renewal_info ? ",\"renewalInfo\":\"" + base + "/renewal-info/\"" : std::string()) +
           ",\"meta\":{\"termsOfService\":\"" + tos + "\",\"externalAccountRequired\":" + (eab_required ? "true" : "false") +
           (profiles.empty() ? std::string() : ",\"profiles\":{" + prof + "}") + "}}";
  }

  static std::string str(simdjson::dom::element e, const char* k) {
    std::string_view s;
    if (e[k].get_string().get(s) != simdjson::SUCCESS) return {};
    return std::string(s);
  }

  static EVP_PKEY* key_from_jwk(const std::string& jwk) {
    simdjson::dom::parser p;
    simdjson::padded_string ps(jwk);
    simdjson::dom::element e;
    if (p.parse(ps).get(e) != simdjson::SUCCESS) return nullptr;
    if (str(e, "kty") != "EC" || str(e, "crv") != "P-256") return nullptr;
    auto x = acme::base64url_decode(str(e, "x"));
    auto y = acme::base64url_decode(str(e, "y"));
    if (!x || !y || x->size() != 32 || y->size() != 32) return nullptr;
    std::string point = "\x04" + *x + *y;
    OSSL_PARAM_BLD* bld = OSSL_PARAM_BLD_new();
    OSSL_PARAM_BLD_push_utf8_string(bld, OSSL_PKEY_PARAM_GROUP_NAME, "prime256v1", 0);
    OSSL_PARAM_BLD_push_octet_string(bld, OSSL_PKEY_PARAM_PUB_KEY, point.data(), point.size());
    OSSL_PARAM* params = OSSL_PARAM_BLD_to_param(bld);
    EVP_PKEY_CTX* ctx = EVP_PKEY_CTX_new_from_name(nullptr, "EC", nullptr);
    EVP_PKEY* key = nullptr;
    if (EVP_PKEY_fromdata_init(ctx) != 1 || EVP_PKEY_fromdata(ctx, &key, EVP_PKEY_PUBLIC_KEY, params) != 1) key = nullptr;
    EVP_PKEY_CTX_free(ctx);
    OSSL_PARAM_free(params);
    OSSL_PARAM_BLD_free(bld);
    return key;
  }

  // Verifies a flattened JWS; fills `j`. With `expected_url` empty, the nonce is required.
  std::optional<acme::http_response> verify_jws(std::string_view body, const std::string& expected_url, jws& j,
                                                bool need_nonce) {
    simdjson::dom::parser p;
    simdjson::padded_string ps(body);
    simdjson::dom::element e;
    if (p.parse(ps).get(e) != simdjson::SUCCESS) return problem(400, "malformed", "not JSON");
    std::string prot = str(e, "protected"), pay = str(e, "payload"), sig = str(e, "signature");
    auto header = acme::base64url_decode(prot);
    auto payload = acme::base64url_decode(pay);
    auto signature = acme::base64url_decode(sig);
    if (!header || !payload || !signature) return problem(400, "malformed", "bad base64url");
    simdjson::dom::parser hp;
    simdjson::padded_string hps(*header);
    simdjson::dom::element h;
    if (hp.parse(hps).get(h) != simdjson::SUCCESS) return problem(400, "malformed", "bad header");
    if (str(h, "alg") != "ES256") return problem(400, "badSignatureAlgorithm", "ES256 only");
    if (str(h, "url") != expected_url) return problem(401, "unauthorized", "url mismatch");
    if (need_nonce) {
      auto n = str(h, "nonce");
      if (!nonces_.erase(n)) return problem(400, "badNonce", "unknown nonce");
    } else if (!str(h, "nonce").empty()) {
      return problem(400, "malformed", "inner JWS has a nonce");
    }
    j.kid = str(h, "kid");
    simdjson::dom::element jwk;
    if (h["jwk"].get(jwk) == simdjson::SUCCESS) {
      if (!j.kid.empty()) return problem(400, "malformed", "both jwk and kid");
      j.jwk = simdjson::minify(jwk);
      j.key = key_from_jwk(j.jwk);
      j.owned = true;
      if (!j.key) return problem(400, "badPublicKey", "bad jwk");
    } else {
      auto it = accounts_.find(j.kid);
      if (it == accounts_.end()) return problem(400, "accountDoesNotExist", "no such account");
      if (it->second.status != "valid") return problem(401, "unauthorized", "account deactivated");
      j.key = it->second.key;
    }
    if (!verify_signature(j.key, "ES256", prot + "." + pay, *signature)) return problem(400, "malformed", "bad signature");
    j.payload = *payload;
    j.url = expected_url;
    return std::nullopt;
  }

  std::optional<acme::http_response> verify(const acme::http_request& r, jws& j) {
    bool ct = false;
    for (auto& h : r.headers)
      if (h.first == "Content-Type" && h.second == "application/jose+json") ct = true;
    if (!ct) return problem(415, "malformed", "content type");
    return verify_jws(r.body, r.url, j, true);
  }

  std::string thumb_of(const std::string& jwk) {
    // The client sends RFC 7638 canonical JWKs; minify keeps member order.
    return acme::jwk_thumbprint(jwk);
  }

  static bool has_member(const std::string& json, const char* k) {
    simdjson::dom::parser p;
    simdjson::padded_string ps(json);
    simdjson::dom::element e;
    return p.parse(ps).get(e) == simdjson::SUCCESS && e[k].error() == simdjson::SUCCESS;
  }

  acme::http_response route(const std::string& path, jws& j) {
    if (path == "/new-acct") return new_account(j);
    if (path == "/key-change") return key_change(j);
    if (path == "/revoke") return revoke(j);
    if (!j.jwk.empty()) return problem(400, "malformed", "kid required");
    if (path == "/new-order") return new_order(j);
    if (path.starts_with("/acct/")) return account_op(path, j);
    if (path.starts_with("/order/") && path.ends_with("/finalize")) return finalize(path.substr(7, path.size() - 16), j);
    if (path.starts_with("/order/")) return order_json(path.substr(7));
    if (path.starts_with("/authz/")) return authz_json(path.substr(7), true);
    if (path.starts_with("/chall/")) return challenge_post(path.substr(7), j);
    if (path.starts_with("/cert/")) return cert(path.substr(6));
    return problem(404, "malformed", "no such resource");
  }

  std::string account_json(const account& a) {
    return "{\"status\":\"" + a.status + "\",\"contact\":" + a.contact + ",\"termsOfServiceAgreed\":true,\"orders\":\"" + base +
           "/orders\"}";
  }

  acme::http_response new_account(jws& j) {
    if (j.jwk.empty()) return problem(400, "malformed", "jwk required");
    std::string tp = thumb_of(j.jwk);
    for (auto& [url, a] : accounts_)
      if (a.thumbprint == tp) {
        auto r = resp(200, account_json(a), "application/json");
        r.headers.emplace_back("Location", url);
        return r;
      }
    simdjson::dom::parser p;
    simdjson::padded_string ps(j.payload);
    simdjson::dom::element e;
    if (p.parse(ps).get(e) != simdjson::SUCCESS) return problem(400, "malformed", "payload");
    bool only = false;
    if (e["onlyReturnExisting"].get_bool().get(only) == simdjson::SUCCESS && only)
      return problem(400, "accountDoesNotExist", "no account for this key");
    bool tos_ok = false;
    if (e["termsOfServiceAgreed"].get_bool().get(tos_ok) != simdjson::SUCCESS || !tos_ok)
      return problem(403, "userActionRequired", "agree to the terms");
    simdjson::dom::element eab;
    if (eab_required) {
      if (e["externalAccountBinding"].get(eab) != simdjson::SUCCESS) return problem(400, "externalAccountRequired", "EAB needed");
      std::string prot = str(eab, "protected"), pay = str(eab, "payload"), sig = str(eab, "signature");
      auto h = acme::base64url_decode(prot);
      auto inner_payload = acme::base64url_decode(pay);
      if (!h || !inner_payload) return problem(400, "malformed", "eab");
      simdjson::dom::parser hp;
      simdjson::padded_string hps(*h);
      simdjson::dom::element he;
      if (hp.parse(hps).get(he) != simdjson::SUCCESS) return problem(400, "malformed", "eab header");
      auto key = eab_keys.find(str(he, "kid"));
      if (key == eab_keys.end() || str(he, "alg") != "HS256" || str(he, "url") != base + "/new-acct")
        return problem(401, "unauthorized", "eab kid");
      if (*inner_payload != j.jwk) return problem(400, "malformed", "eab payload is not the account key");
      unsigned char mac[EVP_MAX_MD_SIZE];
      unsigned len = 0;
      std::string input = prot + "." + pay;
      HMAC(EVP_sha256(), key->second.data(), static_cast<int>(key->second.size()),
           reinterpret_cast<const unsigned char*>(input.data()), input.size(), mac, &len);
      if (acme::base64url(std::string_view(reinterpret_cast<char*>(mac), len)) != sig)
        return problem(401, "unauthorized", "eab mac");
    }
    account a;
    a.key = j.key;
    j.owned = false;
    a.jwk = j.jwk;
    a.thumbprint = tp;
    simdjson::dom::element contact;
    if (e["contact"].get(contact) == simdjson::SUCCESS) a.contact = simdjson::minify(contact);
    std::string url = base + "/acct/" + std::to_string(next_id_++);
    auto r = resp(201, account_json(a), "application/json");
    accounts_[url] = std::move(a);
    r.headers.emplace_back("Location", url);
    return r;
  }

  acme::http_response account_op(const std::string& path, jws& j) {
    std::string url = base + path;
    if (url != j.kid) return problem(401, "unauthorized", "not your account");
    auto& a = accounts_[url];
    if (!j.payload.empty()) {
      simdjson::dom::parser p;
      simdjson::padded_string ps(j.payload);
      simdjson::dom::element e;
      if (p.parse(ps).get(e) != simdjson::SUCCESS) return problem(400, "malformed", "payload");
      if (str(e, "status") == "deactivated") a.status = "deactivated";
      simdjson::dom::element contact;
      if (e["contact"].get(contact) == simdjson::SUCCESS) a.contact = simdjson::minify(contact);
    }
    return resp(200, account_json(a), "application/json");
  }

  acme::http_response key_change(jws& outer) {
    if (outer.kid.empty()) return problem(400, "malformed", "kid required");
    jws inner;
    if (auto err = verify_jws(outer.payload, base + "/key-change", inner, false)) return *err;
    if (inner.jwk.empty()) return problem(400, "malformed", "inner jwk");
    simdjson::dom::parser p;
    simdjson::padded_string ps(inner.payload);
    simdjson::dom::element e;
    if (p.parse(ps).get(e) != simdjson::SUCCESS) return problem(400, "malformed", "inner payload");
    auto& a = accounts_[outer.kid];
    simdjson::dom::element old;
    if (str(e, "account") != outer.kid || e["oldKey"].get(old) != simdjson::SUCCESS || simdjson::minify(old) != a.jwk)
      return problem(400, "malformed", "key change payload");
    EVP_PKEY_free(a.key);
    a.key = inner.key;
    inner.owned = false;
    a.jwk = inner.jwk;
    a.thumbprint = thumb_of(inner.jwk);
    return resp(200, account_json(a), "application/json");
  }

  acme::http_response new_order(jws& j) {
    if (rate_limit_orders > 0) {
      --rate_limit_orders;
      auto r = problem(429, "rateLimited", "too many orders");
      r.headers.emplace_back("Retry-After", "7");
      return r;
    }
    order_payloads.push_back(j.payload);
    simdjson::dom::parser p;
    simdjson::padded_string ps(j.payload);
    simdjson::dom::element e;
    simdjson::dom::array ids;
    if (p.parse(ps).get(e) != simdjson::SUCCESS || e["identifiers"].get_array().get(ids) != simdjson::SUCCESS)
      return problem(400, "malformed", "identifiers");
    order o;
    o.account = j.kid;
    o.profile = str(e, "profile");
    o.replaces = str(e, "replaces");
    if (!o.profile.empty() && std::find(profiles.begin(), profiles.end(), o.profile) == profiles.end())
      return problem(400, "invalidProfile", "unknown profile");
    std::string oid = std::to_string(next_id_++);
    for (auto id : ids) {
      std::string v = str(id, "value");
      if (v.empty() || str(id, "type") != "dns") return problem(400, "malformed", "identifier");
      if (v.ends_with(".invalid")) return problem(400, "rejectedIdentifier", "will not issue for " + v);
      o.names.push_back(v);
      authz a;
      a.wildcard = v.starts_with("*.");
      a.name = a.wildcard ? v.substr(2) : v;
      a.order = oid;
      a.account = j.kid;
      std::string aid = std::to_string(next_id_++);
      for (std::string type : {"http-01", "dns-01", "tls-alpn-01"}) {
        if (a.wildcard && type != "dns-01") continue;
        std::string cid = std::to_string(next_id_++);
        challenges_[cid] = challenge{type, acme::base64url(std::to_string(next_id_ * 7919) + "tok"), "pending", aid};
        a.challenges.push_back(cid);
      }
      authzs_[aid] = std::move(a);
      o.authzs.push_back(aid);
    }
    orders_[oid] = std::move(o);
    auto r = order_json(oid);
    r.status = 201;
    r.headers.emplace_back("Location", base + "/order/" + oid);
    return r;
  }

  void update_order(order& o) {
    if (o.status == "processing") {
      if (std::chrono::steady_clock::now() < o.processing_until) return;
      o.status = "valid";
      return;
    }
    if (o.status != "pending") return;
    bool all_valid = true;
    for (auto& aid : o.authzs) {
      auto& a = authzs_[aid];
      if (a.status == "invalid") {
        o.status = "invalid";
        return;
      }
      if (a.status != "valid") all_valid = false;
    }
    if (all_valid) o.status = "ready";
  }

  acme::http_response order_json(const std::string& oid) {
    auto it = orders_.find(oid);
    if (it == orders_.end()) return problem(404, "malformed", "no order");
    auto& o = it->second;
    if (o.status == "processing" && std::chrono::steady_clock::now() < o.processing_until) ++early_order_polls;
    update_order(o);
    return order_body(o, oid);
  }

  // The order's JSON; no certificate URL until it is valid.
  acme::http_response order_body(const order& o, const std::string& oid) {
    std::string ids, az;
    for (auto& n : o.names) ids += (ids.empty() ? "" : ",") + std::string("{\"type\":\"dns\",\"value\":") + acme::json_string(n) + "}";
    for (auto& a : o.authzs) az += (az.empty() ? "\"" : ",\"") + base + "/authz/" + a + "\"";
    std::string body = "{\"status\":\"" + o.status + "\",\"identifiers\":[" + ids + "],\"authorizations\":[" + az +
                       "],\"finalize\":\"" + base + "/order/" + oid + "/finalize\"";
    if (!o.cert.empty() && o.status == "valid") body += ",\"certificate\":\"" + base + "/cert/" + o.cert + "\"";
    if (!o.profile.empty()) body += ",\"profile\":" + acme::json_string(o.profile);
    if (!o.replaces.empty()) body += ",\"replaces\":" + acme::json_string(o.replaces);
    body += "}";
    return resp(200, body, "application/json");
  }

  std::string challenge_json(const std::string& cid) {
    auto& c = challenges_[cid];
    std::string s = "{\"type\":\"" + c.type + "\",\"url\":\"" + base + "/chall/" + cid + "\",\"token\":\"" + c.token +
                    "\",\"status\":\"" + c.status + "\"";
    if (c.status == "invalid")
      s += ",\"error\":{\"type\":\"urn:ietf:params:acme:error:incorrectResponse\",\"detail\":\"wrong key authorization\"}";
    return s + "}";
  }

  acme::http_response authz_json(const std::string& aid, bool poll) {
    auto it = authzs_.find(aid);
    if (it == authzs_.end()) return problem(404, "malformed", "no authz");
    auto& a = it->second;
    if (poll && a.polls_left > 0 && --a.polls_left == 0) {
      // Validation "finishes": the answered challenge decides.
      for (auto& cid : a.challenges) {
        auto& c = challenges_[cid];
        if (c.status != "processing") continue;
        std::string expected = c.token + "." + accounts_[a.account].thumbprint;
        auto got = presented.find(c.type + ":" + c.token);
        bool ok = !fail_validation && got != presented.end() && got->second == expected;
        c.status = ok ? "valid" : "invalid";
        a.status = c.status;
      }
    }
    std::string chs;
    for (auto& cid : a.challenges) chs += (chs.empty() ? "" : ",") + challenge_json(cid);
    auto r = resp(200,
                  "{\"status\":\"" + a.status + "\",\"identifier\":{\"type\":\"dns\",\"value\":" + acme::json_string(a.name) +
                      "},\"wildcard\":" + (a.wildcard ? "true" : "false") + ",\"challenges\":[" + chs + "]}",
                  "application/json");
    if (a.status == "pending" && a.polls_left > 0) r.headers.emplace_back("Retry-After", "0");
    return r;
  }

  acme::http_response challenge_post(const std::string& cid, jws&) {
    auto it = challenges_.find(cid);
    if (it == challenges_.end()) return problem(404, "malformed", "no challenge");
    auto& c = it->second;
    auto& a = authzs_[c.authz];
    if (c.status == "pending" && a.status == "pending") {
      c.status = "processing";
      a.polls_left = pending_polls + 1;
    }
    return resp(200, challenge_json(cid), "application/json");
  }

  acme::http_response finalize(const std::string& oid, jws& j) {
    auto it = orders_.find(oid);
    if (it == orders_.end()) return problem(404, "malformed", "no order");
    auto& o = it->second;
    update_order(o);
    if (o.status != "ready") return problem(403, "orderNotReady", "order is " + o.status);
    simdjson::dom::parser p;
    simdjson::padded_string ps(j.payload);
    simdjson::dom::element e;
    if (p.parse(ps).get(e) != simdjson::SUCCESS) return problem(400, "malformed", "payload");
    auto der = acme::base64url_decode(str(e, "csr"));
    if (!der) return problem(400, "badCSR", "csr encoding");
    auto* dp = reinterpret_cast<const unsigned char*>(der->data());
    X509_REQ* req = d2i_X509_REQ(nullptr, &dp, static_cast<long>(der->size()));
    if (!req || X509_REQ_verify(req, X509_REQ_get0_pubkey(req)) != 1) {
      X509_REQ_free(req);
      return problem(400, "badCSR", "csr signature");
    }
    X509* x = X509_new();
    X509_set_version(x, 2);
    ASN1_INTEGER_set_int64(X509_get_serialNumber(x), 0x1000 + next_id_++);
    X509_gmtime_adj(X509_getm_notBefore(x), -60);
    X509_gmtime_adj(X509_getm_notAfter(x), 7 * 86400);
    X509_set_subject_name(x, X509_REQ_get_subject_name(req));
    X509_set_issuer_name(x, X509_get_subject_name(ca_cert_));
    X509_set_pubkey(x, X509_REQ_get0_pubkey(req));
    STACK_OF(X509_EXTENSION)* exts = X509_REQ_get_extensions(req);
    for (int i = 0; i < sk_X509_EXTENSION_num(exts); ++i) X509_add_ext(x, sk_X509_EXTENSION_value(exts, i), -1);
    sk_X509_EXTENSION_pop_free(exts, X509_EXTENSION_free);
    add_ext(ca_cert_, x, NID_authority_key_identifier, "keyid:always");
    X509_sign(x, ca_key_, EVP_sha256());
    X509_REQ_free(req);
    std::string leaf = pem_of(x);
    X509_free(x);
    std::string cid = std::to_string(next_id_++);
    certs_[cid] = leaf + ca_pem();
    o.cert = cid;
    if (finalize_retry_after < 0) {
      o.status = "valid";
      return order_json(oid);
    }
    o.status = "processing";
    o.processing_until = std::chrono::steady_clock::now() + std::chrono::seconds(finalize_retry_after);
    auto r = order_body(o, oid);
    r.headers.emplace_back("Retry-After", std::to_string(finalize_retry_after));
    return r;
  }

  acme::http_response cert(const std::string& cid) {
    std::string id = cid;
    int alt = -1;
    if (auto slash = id.find('/'); slash != std::string::npos) {
      alt = std::stoi(id.substr(slash + 1));
      id = id.substr(0, slash);
    }
    auto it = certs_.find(id);
    if (it == certs_.end()) return problem(404, "malformed", "no cert");
    if (busy_cert_downloads > 0) {
      --busy_cert_downloads;
      auto busy = resp(503, "busy");
      busy.headers.emplace_back("Retry-After", "1");
      return busy;
    }
    auto r = resp(200, it->second, "application/pem-certificate-chain");
    if (alt < 0)
      for (int i = 0; i < alternates; ++i)
        r.headers.emplace_back("Link", "<" + base + "/cert/" + id + "/" + std::to_string(i) + ">;rel=\"alternate\"");
    r.headers.emplace_back("Link", "<" + base + "/dir>;rel=\"index\"");
    return r;
  }

  acme::http_response renewal(const std::string& id) {
    for (auto& [cid, chain] : certs_) {
      auto certid = acme::ari_certificate_id(chain);
      if (certid && *certid == id) {
        auto r = resp(200,
                      "{\"suggestedWindow\":{\"start\":\"2030-01-02T00:00:00Z\",\"end\":\"2030-01-03T00:00:00Z\"},"
                      "\"explanationURL\":\"https://ca.test/why\"}",
                      "application/json");
        r.headers.emplace_back("Retry-After", "21600");
        return r;
      }
    }
    return problem(404, "malformed", "unknown certificate");
  }

  acme::http_response revoke(jws& j) {
    simdjson::dom::parser p;
    simdjson::padded_string ps(j.payload);
    simdjson::dom::element e;
    if (p.parse(ps).get(e) != simdjson::SUCCESS) return problem(400, "malformed", "payload");
    auto der = acme::base64url_decode(str(e, "certificate"));
    if (!der) return problem(400, "malformed", "certificate");
    auto* dp = reinterpret_cast<const unsigned char*>(der->data());
    X509* x = d2i_X509(nullptr, &dp, static_cast<long>(der->size()));
    if (!x) return problem(400, "malformed", "certificate der");
    bool allowed = !j.kid.empty() || EVP_PKEY_eq(X509_get0_pubkey(x), j.key) == 1;
    std::string serial = std::to_string(ASN1_INTEGER_get(X509_get0_serialNumber(x)));
    X509_free(x);
    if (!allowed) return problem(403, "unauthorized", "key does not match the certificate");
    if (!revoked_serials.insert(serial).second) return problem(400, "alreadyRevoked", "already revoked");
    return resp(200, "");
  }

  EVP_PKEY* ca_key_ = nullptr;
  X509* ca_cert_ = nullptr;
  std::set<std::string> nonces_;
  int next_nonce_ = 1;
  int next_id_ = 1;
  std::map<std::string, account> accounts_;
  std::map<std::string, order> orders_;
  std::map<std::string, authz> authzs_;
  std::map<std::string, challenge> challenges_;
  std::map<std::string, std::string> certs_;
};

}  // namespace acme_test
