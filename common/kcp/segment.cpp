#include "common/kcp/segment.hpp"

#include "common/kcp/bytes.hpp"

namespace pfp::kcp {

void encode_header(const SegmentHeader& h, uint8_t* out) noexcept {
    put_le32(out, h.conv);
    out[4] = h.cmd;
    out[5] = h.frg;
    put_le16(out + 6, h.wnd);
    put_le32(out + 8, h.ts);
    put_le32(out + 12, h.sn);
    put_le32(out + 16, h.una);
    put_le32(out + 20, h.len);
}

SegmentHeader decode_header(const uint8_t* in) noexcept {
    SegmentHeader h;
    h.conv = get_le32(in);
    h.cmd = in[4];
    h.frg = in[5];
    h.wnd = get_le16(in + 6);
    h.ts = get_le32(in + 8);
    h.sn = get_le32(in + 12);
    h.una = get_le32(in + 16);
    h.len = get_le32(in + 20);
    return h;
}

const char* to_string(InputError e) noexcept {
    switch (e) {
        case InputError::none:
            return "ok";
        case InputError::truncated:
            return "truncated segment";
        case InputError::wrong_conv:
            return "segment for another conversation";
        case InputError::bad_command:
            return "unknown segment command";
        case InputError::too_long:
            return "segment payload too long";
    }
    return "?";
}

bool SegmentReader::next(SegmentView& out) noexcept {
    if (error_ != InputError::none || rest_.empty()) return false;
    if (rest_.size() < kSegmentHeader) {
        error_ = InputError::truncated;
        return false;
    }
    const SegmentHeader h = decode_header(rest_.data());
    if (h.conv != conv_) {
        error_ = InputError::wrong_conv;
        return false;
    }
    if (h.cmd < static_cast<uint8_t>(Command::push) ||
        h.cmd > static_cast<uint8_t>(Command::window_tell)) {
        error_ = InputError::bad_command;
        return false;
    }
    if (h.len > max_payload_ || (h.cmd != static_cast<uint8_t>(Command::push) && h.len != 0)) {
        error_ = InputError::too_long;
        return false;
    }
    if (rest_.size() - kSegmentHeader < h.len) {
        error_ = InputError::truncated;
        return false;
    }
    out.header = h;
    out.payload = rest_.subspan(kSegmentHeader, h.len);
    rest_ = rest_.subspan(kSegmentHeader + h.len);
    return true;
}

InputError check_datagram(std::span<const uint8_t> datagram, uint32_t conv,
                          size_t max_payload) noexcept {
    SegmentReader reader(datagram, conv, max_payload);
    SegmentView seg;
    while (reader.next(seg)) {
    }
    return reader.error();
}

}  // namespace pfp::kcp
