#include <catch2/catch.hpp>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "protocol/request_id.hpp"

using glm::protocol::make_request_id;

TEST_CASE("request ids are version-4 UUIDs in lowercase text", "[request_id]") {
  const std::regex uuid_v4("^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$");
  for (int i = 0; i < 200; ++i) {
    const std::string id = make_request_id();
    INFO(id);
    REQUIRE(id.size() == 36);
    CHECK(std::regex_match(id, uuid_v4));
  }
}

TEST_CASE("request ids are unique", "[request_id]") {
  std::set<std::string> ids;
  for (int i = 0; i < 1000; ++i) ids.insert(make_request_id());
  CHECK(ids.size() == 1000);
}

TEST_CASE("request ids use every random nibble", "[request_id]") {
  // Each position other than the fixed version and dashes should vary: a generator bug that
  // leaves bits at zero (a short draw, a bad shift) shows up as a constant column.
  std::vector<std::set<char>> seen(36);
  for (int i = 0; i < 1000; ++i) {
    const std::string id = make_request_id();
    for (std::size_t k = 0; k < id.size(); ++k) seen[k].insert(id[k]);
  }
  for (std::size_t k = 0; k < 36; ++k) {
    INFO("position " << k);
    if (k == 8 || k == 13 || k == 18 || k == 23) {
      CHECK(seen[k] == std::set<char>{'-'});
    } else if (k == 14) {
      CHECK(seen[k] == std::set<char>{'4'});
    } else if (k == 19) {
      CHECK(seen[k] == std::set<char>{'8', '9', 'a', 'b'});
    } else {
      CHECK(seen[k].size() == 16);
    }
  }
}

TEST_CASE("threads draw distinct request ids", "[request_id]") {
  std::vector<std::string> a;
  std::vector<std::string> b;
  std::thread ta([&] {
    for (int i = 0; i < 500; ++i) a.push_back(make_request_id());
  });
  std::thread tb([&] {
    for (int i = 0; i < 500; ++i) b.push_back(make_request_id());
  });
  ta.join();
  tb.join();
  std::set<std::string> ids(a.begin(), a.end());
  ids.insert(b.begin(), b.end());
  CHECK(ids.size() == 1000);
}

TEST_CASE("a client's request id is used only when it is sane", "[request_id]") {
  using glm::protocol::is_sane_request_id;
  CHECK(is_sane_request_id("abc"));
  CHECK(is_sane_request_id("cmpl-0f2b.A_9:7"));
  CHECK(is_sane_request_id(make_request_id()));
  CHECK(is_sane_request_id(std::string(128, 'x')));

  CHECK_FALSE(is_sane_request_id(""));
  CHECK_FALSE(is_sane_request_id(std::string(129, 'x')));
  for (std::string bad : {"a b", "a\"b", "a\\b", "a\rb", "a\nb", "{}", "a/b", "a;b", "é", "a\tb"}) {
    INFO(bad);
    CHECK_FALSE(is_sane_request_id(bad));
  }
  CHECK_FALSE(is_sane_request_id(std::string("a\0b", 3)));
}
