#include <catch2/catch.hpp>
#include <string>
#include <string_view>

#include "protocol/substring_finder.hpp"

using glm::protocol::substring_finder;

namespace {

// What the finder must agree with: string_view::find, from every start offset.
void agrees(std::string_view needle, std::string_view hay) {
  const substring_finder finder(needle);
  for (std::size_t from = 0; from <= hay.size() + 1; ++from) {
    INFO("needle '" << needle << "' hay '" << hay << "' from " << from);
    CHECK(finder.find(hay, from) == hay.find(needle, from));
  }
  CHECK(finder.in(hay) == (hay.find(needle) != std::string_view::npos));
}

}  // namespace

TEST_CASE("substring_finder finds what string_view::find finds", "[substring_finder]") {
  agrees("recomputed", R"({"stop_reason":"recomputed"})");
  agrees("recomputed", R"({"stop_reason":"recompute"})");
  agrees("\"usage\"", R"({"choices":[],"usage":null,"usage":{}})");
  agrees("\"usage\"", "\"usage\"");
  agrees("\"usage\"", "usage\"");
  agrees("aab", "aaab aab ab");
  agrees("abcab", "abcabcabcab");
  agrees("xx", "xxxx");
  agrees("x", "axbx");
  agrees("long needle", "short");
  agrees("end", "at the end");
  agrees("", "abc");
}

TEST_CASE("substring_finder works on bytes outside ASCII", "[substring_finder]") {
  const std::string hay = "caf\xc3\xa9 \xe2\x82\xac \xff\xfe";
  agrees("\xe2\x82\xac", hay);
  agrees("\xff\xfe", hay);
  agrees("\xfe\xff", hay);
}
