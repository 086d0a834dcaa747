// data_encoder.hpp: message content to the DATA phase's byte stream.
//
// Pure.  Content is CR LF lines (the decoder guarantees it); every line that
// starts with "." gets one more (RFC 5321 4.5.2), so no content line can
// ever read as the end of data at the backend.  finish() closes the stream
// with CR LF . CR LF, adding the CR LF first if the content lacks one.
#pragma once

#include <string>
#include <string_view>

namespace smtplb::smtp {

class DataEncoder {
 public:
  void encode(std::string_view content, std::string& out);
  void finish(std::string& out);
  void reset() { at_line_start_ = true; }

 private:
  bool at_line_start_ = true;
};

}  // namespace smtplb::smtp
