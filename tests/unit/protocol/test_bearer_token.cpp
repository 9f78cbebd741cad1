#include <catch2/catch.hpp>
#include <string>

#include "protocol/bearer_token.hpp"

using glm::protocol::bearer_token;

TEST_CASE("token_of reads the Bearer scheme only", "[bearer_token]") {
  CHECK(bearer_token::token_of("Bearer abc") == "abc");
  CHECK(bearer_token::token_of("bearer abc") == "abc");
  CHECK(bearer_token::token_of("BEARER abc") == "abc");
  CHECK(bearer_token::token_of("  Bearer \t abc  ") == "abc");
  CHECK(bearer_token::token_of("Bearer a b") == "a b");
  CHECK(bearer_token::token_of("Bearerabc").empty());
  CHECK(bearer_token::token_of("Bearer").empty());
  CHECK(bearer_token::token_of("Bearer ").empty());
  CHECK(bearer_token::token_of("Basic YWxhZGRpbjpvcGVuc2VzYW1l").empty());
  CHECK(bearer_token::token_of("").empty());
  CHECK(bearer_token::token_of("abc").empty());
}

TEST_CASE("constant_time_equal is plain equality", "[bearer_token]") {
  CHECK(bearer_token::constant_time_equal("secret", "secret"));
  CHECK(bearer_token::constant_time_equal("", ""));
  CHECK_FALSE(bearer_token::constant_time_equal("secreT", "secret"));
  CHECK_FALSE(bearer_token::constant_time_equal("Secret", "secret"));
  SECTION("a prefix or an extension of the secret is not the secret") {
    CHECK_FALSE(bearer_token::constant_time_equal("secre", "secret"));
    CHECK_FALSE(bearer_token::constant_time_equal("secrets", "secret"));
    CHECK_FALSE(bearer_token::constant_time_equal("", "secret"));
    CHECK_FALSE(bearer_token::constant_time_equal("secret", ""));
  }
  SECTION("a shorter guess padded with NULs does not match through the zero padding") {
    CHECK_FALSE(bearer_token::constant_time_equal("ab", std::string("ab\0", 3)));
    CHECK(bearer_token::constant_time_equal(std::string("ab\0", 3), std::string("ab\0", 3)));
  }
  SECTION("every single-byte change is caught, wherever it is") {
    const std::string secret = "sk-0123456789abcdefghijklmnopqrstuvwxyz";
    for (std::size_t i = 0; i < secret.size(); ++i) {
      std::string guess = secret;
      guess[i] = static_cast<char>(guess[i] ^ 0x01);
      CHECK_FALSE(bearer_token::constant_time_equal(guess, secret));
    }
  }
}

TEST_CASE("matches wants the exact configured token", "[bearer_token]") {
  CHECK(bearer_token::matches("Bearer sk-1", "sk-1"));
  CHECK(bearer_token::matches("bearer   sk-1 ", "sk-1"));
  CHECK_FALSE(bearer_token::matches("Bearer sk-2", "sk-1"));
  CHECK_FALSE(bearer_token::matches("sk-1", "sk-1"));
  CHECK_FALSE(bearer_token::matches("Basic sk-1", "sk-1"));
  CHECK_FALSE(bearer_token::matches("", "sk-1"));
  SECTION("no configured token never matches, not even an empty one") {
    CHECK_FALSE(bearer_token::matches("Bearer ", ""));
    CHECK_FALSE(bearer_token::matches("", ""));
    CHECK_FALSE(bearer_token::matches("Bearer x", ""));
  }
}
