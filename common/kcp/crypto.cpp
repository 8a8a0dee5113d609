#include "common/kcp/crypto.hpp"

#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <sys/random.h>

#include <cerrno>
#include <climits>
#include <stdexcept>

namespace pfp::kcp {

namespace {

struct KdfCtxFree {
    void operator()(EVP_KDF_CTX* c) const noexcept { EVP_KDF_CTX_free(c); }
};
using KdfCtx = std::unique_ptr<EVP_KDF_CTX, KdfCtxFree>;

KdfCtx new_hkdf() noexcept {
    EVP_KDF* kdf = EVP_KDF_fetch(nullptr, OSSL_KDF_NAME_HKDF, nullptr);
    if (kdf == nullptr) return nullptr;
    KdfCtx ctx(EVP_KDF_CTX_new(kdf));
    EVP_KDF_free(kdf);
    return ctx;
}

// OSSL_PARAM takes non-const pointers for inputs it only reads.
void* input(std::span<const uint8_t> s) noexcept {
    return const_cast<uint8_t*>(s.data());
}

}  // namespace

bool hkdf_extract(std::span<const uint8_t> salt, std::span<const uint8_t> ikm, Key& prk) noexcept {
    KdfCtx ctx = new_hkdf();
    if (!ctx) return false;
    int mode = EVP_KDF_HKDF_MODE_EXTRACT_ONLY;
    char digest[] = "SHA256";
    OSSL_PARAM params[5];
    size_t n = 0;
    params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
    params[n++] = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
    params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, input(ikm), ikm.size());
    if (!salt.empty())
        params[n++] =
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, input(salt), salt.size());
    params[n] = OSSL_PARAM_construct_end();
    return EVP_KDF_derive(ctx.get(), prk.data(), prk.size(), params) == 1;
}

bool hkdf_expand(std::span<const uint8_t> prk, std::span<const uint8_t> info,
                 std::span<uint8_t> out) noexcept {
    if (out.empty() || out.size() > 255 * 32) return false;
    KdfCtx ctx = new_hkdf();
    if (!ctx) return false;
    int mode = EVP_KDF_HKDF_MODE_EXPAND_ONLY;
    char digest[] = "SHA256";
    OSSL_PARAM params[5];
    size_t n = 0;
    params[n++] = OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0);
    params[n++] = OSSL_PARAM_construct_int(OSSL_KDF_PARAM_MODE, &mode);
    params[n++] = OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, input(prk), prk.size());
    if (!info.empty())
        params[n++] =
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, input(info), info.size());
    params[n] = OSSL_PARAM_construct_end();
    return EVP_KDF_derive(ctx.get(), out.data(), out.size(), params) == 1;
}

struct Aead::Ctx {
    EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
    ~Ctx() { EVP_CIPHER_CTX_free(c); }
};

Aead::Aead() : ctx_(std::make_unique<Ctx>()) {
    if (ctx_->c == nullptr) throw std::runtime_error("EVP_CIPHER_CTX_new failed");
}
Aead::~Aead() = default;
Aead::Aead(Aead&&) noexcept = default;
Aead& Aead::operator=(Aead&&) noexcept = default;

bool Aead::set_key(std::span<const uint8_t, kKeySize> key) noexcept {
    keyed_ = ctx_ && EVP_CipherInit_ex(ctx_->c, EVP_chacha20_poly1305(), nullptr, key.data(),
                                       nullptr, 1) == 1;
    return keyed_;
}

bool Aead::seal(std::span<const uint8_t, kAeadNonceSize> nonce, std::span<const uint8_t> aad,
                std::span<const uint8_t> plaintext, std::span<uint8_t> out) noexcept {
    if (!keyed_ || out.size() != plaintext.size() + kTagSize || plaintext.size() > INT_MAX ||
        aad.size() > INT_MAX)
        return false;
    EVP_CIPHER_CTX* c = ctx_->c;
    int len = 0;
    if (EVP_CipherInit_ex(c, nullptr, nullptr, nullptr, nonce.data(), 1) != 1) return false;
    if (!aad.empty() &&
        EVP_CipherUpdate(c, nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1)
        return false;
    if (!plaintext.empty() && EVP_CipherUpdate(c, out.data(), &len, plaintext.data(),
                                               static_cast<int>(plaintext.size())) != 1)
        return false;
    if (EVP_CipherFinal_ex(c, out.data() + plaintext.size(), &len) != 1) return false;
    return EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_GET_TAG, kTagSize, out.data() + plaintext.size()) ==
           1;
}

bool Aead::open(std::span<const uint8_t, kAeadNonceSize> nonce, std::span<const uint8_t> aad,
                std::span<const uint8_t> sealed, std::span<uint8_t> out) noexcept {
    if (!keyed_ || sealed.size() < kTagSize || out.size() != sealed.size() - kTagSize ||
        sealed.size() > INT_MAX || aad.size() > INT_MAX)
        return false;
    EVP_CIPHER_CTX* c = ctx_->c;
    const size_t body = sealed.size() - kTagSize;
    int len = 0;
    if (EVP_CipherInit_ex(c, nullptr, nullptr, nullptr, nonce.data(), 0) != 1) return false;
    if (!aad.empty() &&
        EVP_CipherUpdate(c, nullptr, &len, aad.data(), static_cast<int>(aad.size())) != 1)
        return false;
    if (body != 0 &&
        EVP_CipherUpdate(c, out.data(), &len, sealed.data(), static_cast<int>(body)) != 1)
        return false;
    if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_AEAD_SET_TAG, kTagSize,
                            const_cast<uint8_t*>(sealed.data() + body)) != 1)
        return false;
    return EVP_CipherFinal_ex(c, out.data() + body, &len) == 1;
}

bool fill_random(std::span<uint8_t> out) noexcept {
    size_t done = 0;
    while (done < out.size()) {
        const ssize_t n = getrandom(out.data() + done, out.size() - done, 0);
        if (n < 0) {
            if (errno == EINTR) continue;
            return false;
        }
        done += static_cast<size_t>(n);
    }
    return true;
}

void warm_up_crypto() {
    const uint8_t zero[kKeySize] = {};
    Key prk;
    uint8_t okm[kKeySize];
    if (!hkdf_extract(zero, zero, prk) || !hkdf_expand(prk, zero, okm))
        throw std::runtime_error("OpenSSL: HKDF-SHA256 is not available");
    Aead aead;
    uint8_t nonce[kAeadNonceSize] = {};
    uint8_t sealed[kTagSize];
    if (!aead.set_key(std::span<const uint8_t, kKeySize>(zero)) ||
        !aead.seal(nonce, {}, {}, sealed))
        throw std::runtime_error("OpenSSL: ChaCha20-Poly1305 is not available");
}

}  // namespace pfp::kcp
