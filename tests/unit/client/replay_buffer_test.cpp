#include "client/replay_buffer.hpp"

#include <gtest/gtest.h>

#include <string>

namespace smtplb::client {
namespace {

std::string read_all(const ReplayBuffer& b, std::size_t chunk) {
  std::string all, part;
  for (std::uint64_t off = 0; off < b.size(); off += part.size()) {
    EXPECT_TRUE(b.read(off, chunk, part));
    if (part.empty()) break;
    all += part;
  }
  return all;
}

TEST(ReplayBuffer, SmallMessagesStayInMemory) {
  ReplayBuffer b(1024, "/tmp");
  ASSERT_TRUE(b.append("hello "));
  ASSERT_TRUE(b.append("world\r\n"));
  EXPECT_FALSE(b.spilled());
  EXPECT_EQ(read_all(b, 4), "hello world\r\n");
}

TEST(ReplayBuffer, LargeMessagesSpillToAnUnlinkedFileAndReadBackExactly) {
  ReplayBuffer b(100, "/tmp");
  std::string expect;
  for (int i = 0; i < 1000; ++i) {
    std::string line = "line " + std::to_string(i) + std::string(i % 50, 'x') + "\r\n";
    ASSERT_TRUE(b.append(line));
    expect += line;
  }
  EXPECT_TRUE(b.spilled());
  EXPECT_EQ(b.size(), expect.size());
  EXPECT_EQ(read_all(b, 77), expect);  // chunks straddle the memory/file boundary
  b.clear();
  EXPECT_EQ(b.size(), 0u);
}

TEST(ReplayBuffer, UnwritableDirectoryFailsInsteadOfLosingBytes) {
  ReplayBuffer b(4, "/nonexistent-dir");
  EXPECT_TRUE(b.append("abcd"));
  EXPECT_FALSE(b.append("efgh"));
  EXPECT_FALSE(b.append("ijkl"));  // stays failed
}

}  // namespace
}  // namespace smtplb::client
