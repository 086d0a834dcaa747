#include "smtp/data_encoder.hpp"

namespace smtplb::smtp {

void DataEncoder::encode(std::string_view content, std::string& out) {
  std::size_t i = 0;
  while (i < content.size()) {
    if (at_line_start_ && content[i] == '.') out.push_back('.');
    std::size_t lf = content.find('\n', i);
    if (lf == std::string_view::npos) {
      out.append(content.substr(i));
      at_line_start_ = false;
      return;
    }
    out.append(content.substr(i, lf + 1 - i));
    at_line_start_ = true;
    i = lf + 1;
  }
}

void DataEncoder::finish(std::string& out) {
  if (!at_line_start_) out.append("\r\n");
  out.append(".\r\n");
  at_line_start_ = true;
}

}  // namespace smtplb::smtp
