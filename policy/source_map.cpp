#include "policy/source_map.hpp"

#include <algorithm>
#include <climits>

namespace pfp::policy {
namespace {

// A bounds-checked reader over the raw text. Every method returns false on anything that is not
// strict JSON (RFC 8259) and leaves the cursor where it stopped.
class Cursor {
  public:
    explicit Cursor(std::string_view text) : t_(text) {}

    bool eof() const { return pos_ >= t_.size(); }
    size_t pos() const { return pos_; }
    int peek() const { return eof() ? -1 : static_cast<unsigned char>(t_[pos_]); }

    bool consume(char c) {
        if (peek() != static_cast<unsigned char>(c)) return false;
        ++pos_;
        return true;
    }

    bool consume(std::string_view word) {
        if (t_.substr(pos_).substr(0, word.size()) != word) return false;
        pos_ += word.size();
        return true;
    }

    void skip_ws() {
        while (!eof()) {
            const char c = t_[pos_];
            if (c != ' ' && c != '\t' && c != '\n' && c != '\r') return;
            ++pos_;
        }
    }

    // A string at the cursor, decoded to UTF-8 the way nlohmann decodes it, so that keys compare
    // equal exactly when nlohmann would merge them ("a" and "\u0061" are the same key).
    bool string(std::string& out) {
        if (!consume('"')) return false;
        while (!eof()) {
            const auto c = static_cast<unsigned char>(t_[pos_++]);
            if (c == '"') return true;
            if (c < 0x20) return false;
            if (c != '\\') {
                out += static_cast<char>(c);
                continue;
            }
            if (eof()) return false;
            switch (t_[pos_++]) {
                case '"':
                    out += '"';
                    break;
                case '\\':
                    out += '\\';
                    break;
                case '/':
                    out += '/';
                    break;
                case 'b':
                    out += '\b';
                    break;
                case 'f':
                    out += '\f';
                    break;
                case 'n':
                    out += '\n';
                    break;
                case 'r':
                    out += '\r';
                    break;
                case 't':
                    out += '\t';
                    break;
                case 'u': {
                    uint32_t cp = 0;
                    if (!hex4(cp)) return false;
                    if (cp >= 0xDC00 && cp <= 0xDFFF) return false;  // lone low surrogate
                    if (cp >= 0xD800 && cp <= 0xDBFF) {
                        uint32_t low = 0;
                        if (!consume("\\u") || !hex4(low) || low < 0xDC00 || low > 0xDFFF) {
                            return false;
                        }
                        cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                    }
                    append_utf8(out, cp);
                    break;
                }
                default:
                    return false;
            }
        }
        return false;  // no closing quote
    }

    // -?(0|[1-9][0-9]*)(\.[0-9]+)?([eE][+-]?[0-9]+)?
    bool number() {
        consume('-');
        if (!consume('0')) {
            if (!digits()) return false;
        }
        if (consume('.') && !digits()) return false;
        if (consume('e') || consume('E')) {
            if (!consume('+')) consume('-');
            if (!digits()) return false;
        }
        return true;
    }

    bool scalar() {
        switch (peek()) {
            case '"': {
                std::string ignored;
                return string(ignored);
            }
            case 't':
                return consume("true");
            case 'f':
                return consume("false");
            case 'n':
                return consume("null");
            default:
                return number();
        }
    }

  private:
    bool digits() {
        const size_t start = pos_;
        while (peek() >= '0' && peek() <= '9') ++pos_;
        return pos_ > start;
    }

    bool hex4(uint32_t& value) {
        if (t_.size() - pos_ < 4) return false;
        for (int i = 0; i < 4; ++i) {
            const char c = t_[pos_++];
            value <<= 4;
            if (c >= '0' && c <= '9') {
                value |= static_cast<uint32_t>(c - '0');
            } else if (c >= 'a' && c <= 'f') {
                value |= static_cast<uint32_t>(c - 'a' + 10);
            } else if (c >= 'A' && c <= 'F') {
                value |= static_cast<uint32_t>(c - 'A' + 10);
            } else {
                return false;
            }
        }
        return true;
    }

    static void append_utf8(std::string& out, uint32_t cp) {
        if (cp < 0x80) {
            out += static_cast<char>(cp);
        } else if (cp < 0x800) {
            out += static_cast<char>(0xC0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xE0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        }
    }

    std::string_view t_;
    size_t pos_ = 0;
};

// Reads one reference token of a JSON pointer, undoing the RFC 6901 escapes. False on a '~' that
// is not followed by '0' or '1'.
bool unescape_token(std::string_view raw, std::string& out) {
    out.clear();
    for (size_t i = 0; i < raw.size(); ++i) {
        if (raw[i] != '~') {
            out += raw[i];
            continue;
        }
        if (i + 1 >= raw.size()) return false;
        const char next = raw[++i];
        if (next == '0') {
            out += '~';
        } else if (next == '1') {
            out += '/';
        } else {
            return false;
        }
    }
    return true;
}

// An array index as RFC 6901 spells it: "0" or digits without a leading zero.
bool parse_index(std::string_view token, size_t& index) {
    if (token.empty() || (token.size() > 1 && token[0] == '0')) return false;
    index = 0;
    for (const char c : token) {
        if (c < '0' || c > '9') return false;
        const auto digit = static_cast<size_t>(c - '0');
        if (index > (SIZE_MAX - digit) / 10) return false;
        index = index * 10 + digit;
    }
    return true;
}

}  // namespace

std::string escape_pointer_token(std::string_view token) {
    std::string out;
    out.reserve(token.size());
    for (const char c : token) {
        if (c == '~') {
            out += "~0";
        } else if (c == '/') {
            out += "~1";
        } else {
            out += c;
        }
    }
    return out;
}

std::string shortened(std::string_view text, size_t max) {
    if (text.size() <= max) return std::string(text);
    size_t n = max;
    while (n > 0 && (static_cast<unsigned char>(text[n]) & 0xC0) == 0x80) --n;
    return std::string(text.substr(0, n)) + "...";
}

SourceMap::SourceMap(std::string_view text) : text_size_(text.size()) {
    line_starts_.push_back(0);
    for (size_t i = 0; i < text.size(); ++i) {
        if (text[i] == '\n') line_starts_.push_back(i + 1);
    }
    scan(text);
}

uint32_t SourceMap::add_node(size_t value_offset, size_t key_offset, uint32_t parent,
                             std::string name) {
    if (nodes_.size() >= UINT32_MAX - 1) return UINT32_MAX;
    const auto id = static_cast<uint32_t>(nodes_.size());
    Node node;
    node.value_offset = value_offset;
    node.key_offset = key_offset;
    node.parent = parent;
    if (parent != UINT32_MAX && nodes_[parent].kind == Kind::array) {
        node.token = std::to_string(nodes_[parent].elements.size());
        nodes_[parent].elements.push_back(id);
    } else if (parent != UINT32_MAX) {
        node.token = name;
        auto [it, inserted] = members_.try_emplace(MemberKey{parent, std::move(name)}, id);
        if (!inserted) {
            // nlohmann keeps the last value, so lookups must find the last one too.
            const uint32_t first = it->second;
            it->second = id;
            nodes_.push_back(std::move(node));
            if (duplicates_.size() < kMaxDuplicates) {
                duplicates_.push_back(
                    DuplicateKey{shortened(pointer_of(id)), shortened(nodes_[id].token),
                                 at_offset(nodes_[first].key_offset), at_offset(key_offset)});
            } else {
                ++duplicates_dropped_;
            }
            return id;
        }
    }
    nodes_.push_back(std::move(node));
    return id;
}

// An explicit stack instead of recursion: `[[[[...` a million deep must not overflow anything.
void SourceMap::scan(std::string_view text) {
    Cursor c(text);
    c.consume("\xEF\xBB\xBF");   // nlohmann skips a UTF-8 byte order mark too
    std::vector<uint32_t> open;  // containers whose closing bracket is still to come
    uint32_t parent = UINT32_MAX;
    size_t key_offset = kNone;
    std::string name;
    bool want_member = false;
    for (;;) {
        if (want_member) {
            c.skip_ws();
            key_offset = c.pos();
            name.clear();
            if (!c.string(name)) return;
            c.skip_ws();
            if (!c.consume(':')) return;
            parent = open.back();
            want_member = false;
        }
        c.skip_ws();
        if (c.eof()) return;
        const uint32_t id = add_node(c.pos(), key_offset, parent, std::move(name));
        if (id == UINT32_MAX) return;
        name.clear();
        key_offset = kNone;

        bool opened = false;
        if (c.consume('{')) {
            nodes_[id].kind = Kind::object;
            c.skip_ws();
            if (!c.consume('}')) {
                open.push_back(id);
                want_member = true;
                opened = true;
            }
        } else if (c.consume('[')) {
            nodes_[id].kind = Kind::array;
            c.skip_ws();
            if (!c.consume(']')) {
                open.push_back(id);
                parent = id;
                opened = true;
            }
        } else if (!c.scalar()) {
            return;
        }
        if (opened) continue;

        // A value is complete: close every container that ends here, then find the next value.
        for (;;) {
            c.skip_ws();
            if (open.empty()) {
                complete_ = c.eof();
                return;
            }
            const uint32_t top = open.back();
            const bool is_object = nodes_[top].kind == Kind::object;
            if (c.consume(',')) {
                if (is_object) {
                    want_member = true;
                } else {
                    parent = top;
                }
                break;
            }
            if (!c.consume(is_object ? '}' : ']')) return;
            open.pop_back();
        }
    }
}

const SourceMap::Node* SourceMap::find(std::string_view pointer) const {
    if (nodes_.empty()) return nullptr;
    uint32_t cur = 0;
    if (pointer.empty()) return &nodes_[cur];
    if (pointer[0] != '/') return nullptr;
    std::string token;
    size_t start = 1;
    for (;;) {
        const size_t slash = pointer.find('/', start);
        const std::string_view raw = pointer.substr(
            start, slash == std::string_view::npos ? std::string_view::npos : slash - start);
        if (!unescape_token(raw, token)) return nullptr;
        const Node& node = nodes_[cur];
        if (node.kind == Kind::array) {
            size_t index = 0;
            if (!parse_index(token, index) || index >= node.elements.size()) return nullptr;
            cur = node.elements[index];
        } else if (node.kind == Kind::object) {
            const auto it = members_.find(MemberKey{cur, token});
            if (it == members_.end()) return nullptr;
            cur = it->second;
        } else {
            return nullptr;
        }
        if (slash == std::string_view::npos) return &nodes_[cur];
        start = slash + 1;
    }
}

std::string SourceMap::pointer_of(uint32_t node) const {
    std::vector<uint32_t> chain;
    for (uint32_t n = node; n != UINT32_MAX && nodes_[n].parent != UINT32_MAX;
         n = nodes_[n].parent) {
        chain.push_back(n);
    }
    std::string out;
    for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
        out += '/';
        out += escape_pointer_token(nodes_[*it].token);
    }
    return out;
}

SourcePos SourceMap::value(std::string_view pointer) const {
    const Node* node = find(pointer);
    return node ? at_offset(node->value_offset) : SourcePos{};
}

SourcePos SourceMap::key(std::string_view pointer) const {
    const Node* node = find(pointer);
    return node && node->key_offset != kNone ? at_offset(node->key_offset) : SourcePos{};
}

SourcePos SourceMap::at_offset(size_t offset) const {
    offset = std::min(offset, text_size_);
    const auto next = std::upper_bound(line_starts_.begin(), line_starts_.end(), offset);
    const auto line = static_cast<size_t>(next - line_starts_.begin());  // >= 1: starts has 0
    const size_t column = offset - line_starts_[line - 1] + 1;
    const auto clamp = [](size_t v) { return static_cast<int>(std::min<size_t>(v, INT_MAX)); };
    return SourcePos{clamp(line), clamp(column)};
}

}  // namespace pfp::policy
