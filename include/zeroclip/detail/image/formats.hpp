//! zeroclip::detail — reads just enough of an image file's header to know what Pillow would make
//! of it: the format, the mode it opens in ("P" for a palette, "I" for 16-bit grey, ...) and the
//! fix-ups needed where stb_image decodes the same bytes differently from Pillow's plugins.
//! Every read is bounds-checked: this runs on untrusted bytes before stb_image does.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace zeroclip::detail {

/// What the header says. `mode` is the Pillow mode name the file opens in; an unknown or
/// malformed header leaves the defaults and stb_image has the last word.
struct format_probe {
    std::string format = "unknown";  ///< "PNG", "JPEG", "GIF", "BMP", "PNM", "TGA"
    std::string mode = "RGB";        ///< "RGB", "RGBA", "L", "LA", "P", "1", "I"
    uint32_t width = 0;         ///< declared size, 0 if the header does not say (or is cut short)
    uint32_t height = 0;
    bool load_16 = false;            ///< decode with 16-bit samples (PNG 16-bit grey, PNM maxval > 255)
    int pnm_maxval = 255;            ///< PNM samples are rescaled like Pillow's PpmDecoder unless 255
    size_t pnm_data_at = 0;     ///< where PNM samples start
    char pnm_kind = 0;               ///< the digit of the PNM magic number: '1', '4', '5' or '6'
    std::string pnm_error;           ///< a malformed PNM header: what is wrong, naming the field
    bool flip_horizontal = false;    ///< TGA stored right-to-left: stb ignores the flag, Pillow does not
    int bmp_16bit_green_bits = 0;    ///< 5 or 6 for a 16-bit BMP: Pillow expands v*255/max, stb by bit copies
    /// GIF: offsets of the Graphic Control Extension flag bytes before the first frame. stb leaves
    /// transparent pixels undrawn; Pillow keeps their palette index, so the flag is cleared first.
    std::vector<size_t> gif_transparency_flag_at;
    int gif_frame[4] = {0, 0, 0, 0};  ///< first frame's rectangle: x, y, width, height
    bool gif_has_frame = false;
    /// Pillow's value for canvas pixels outside the first frame: the transparent index if the
    /// frame has one, else index 0 (as a palette colour for "P", as the grey level for "L").
    uint8_t gif_fill[3] = {0, 0, 0};
    /// PNG: offset of the first chunk (before IEND) whose declared length runs past the end of the
    /// data, 0 if none. stb_image would allocate that length (up to 1 GiB) before failing.
    size_t png_chunk_past_end_at = 0;
    uint64_t png_chunk_declared = 0;  ///< that chunk's declared data length
};

/// Bounds-checked little/big-endian reads; out of range reads give 0 and set `ok` to false.
struct byte_reader {
    const uint8_t* data;
    size_t size;
    bool ok = true;
    uint32_t u8(size_t at) {
        if (at >= size) {
            ok = false;
            return 0;
        }
        return data[at];
    }
    uint32_t le16(size_t at) { return u8(at) | (u8(at + 1) << 8); }
    uint32_t le32(size_t at) { return le16(at) | (le16(at + 2) << 16); }
    uint32_t be32(size_t at) {
        return (u8(at) << 24) | (u8(at + 1) << 16) | (u8(at + 2) << 8) | u8(at + 3);
    }
    bool starts_with(const char* magic, size_t n) const {
        if (size < n) return false;
        for (size_t i = 0; i < n; ++i)
            if (data[i] != static_cast<uint8_t>(magic[i])) return false;
        return true;
    }
};

/// PNG: the IHDR bit depth and colour type decide the mode, as in PngImagePlugin._MODES
/// (Pillow 9.4, the version the fixtures match: 16-bit grey+alpha opens as RGBA).
inline void probe_png(byte_reader& r, format_probe& p) {
    p.format = "PNG";
    // Chunks: 4-byte length, 4-byte type, data, 4-byte CRC; stb stops reading at IEND.
    for (size_t pos = 8; pos + 8 <= r.size;) {
        const uint64_t length = r.be32(pos);
        if (r.be32(pos + 4) == 0x49454E44u) break;  // "IEND"
        if (length + 12 > r.size - pos) {
            p.png_chunk_past_end_at = pos;
            p.png_chunk_declared = length;
            break;
        }
        pos += static_cast<size_t>(length) + 12;
    }
    if (r.be32(12) != 0x49484452u) return;  // "IHDR"
    p.width = r.be32(16);
    p.height = r.be32(20);
    const uint32_t depth = r.u8(24), colour = r.u8(25);
    switch (colour) {
        case 0:
            p.mode = depth == 1 ? "1" : depth == 16 ? "I" : "L";
            p.load_16 = depth == 16;
            break;
        case 2: p.mode = "RGB"; break;
        case 3: p.mode = "P"; break;
        case 4: p.mode = depth == 16 ? "RGBA" : "LA"; break;
        case 6: p.mode = "RGBA"; break;
        default: break;
    }
}

/// True unless palette entry i is (i, i, i) for every entry: GifImagePlugin._is_palette_needed.
inline bool gif_palette_needed(byte_reader& r, size_t at, size_t entries) {
    for (size_t i = 0; i < entries; ++i)
        for (size_t c = 0; c < 3; ++c)
            if (r.u8(at + 3 * i + c) != (i & 0xffu) || !r.ok || i > 255) return true;
    return false;
}

/// GIF: Pillow opens the first frame as "P", or as "L" when its palette is the identity grey ramp.
inline void probe_gif(byte_reader& r, format_probe& p) {
    p.format = "GIF";
    p.mode = "P";
    p.width = r.le16(6);
    p.height = r.le16(8);
    const uint32_t flags = r.u8(10);
    size_t pos = 13, global_at = 0, global_entries = 0;
    if (flags & 0x80) {
        global_at = pos;
        global_entries = size_t{1} << ((flags & 7) + 1);
        pos += 3 * global_entries;
    }
    int transparency = -1;
    while (r.ok && pos < r.size) {
        const uint32_t block = r.u8(pos);
        if (block == 0x21) {  // extension: label, then size-prefixed sub-blocks
            const uint32_t label = r.u8(pos + 1);
            if (label == 0xF9 && r.u8(pos + 2) >= 4) {
                p.gif_transparency_flag_at.push_back(pos + 3);
                if (r.u8(pos + 3) & 1) transparency = static_cast<int>(r.u8(pos + 6));
            }
            pos += 2;
            while (r.ok) {
                const uint32_t n = r.u8(pos);
                pos += 1 + n;
                if (n == 0) break;
            }
        } else if (block == 0x2C) {  // image descriptor of the first frame
            p.gif_frame[0] = static_cast<int>(r.le16(pos + 1));
            p.gif_frame[1] = static_cast<int>(r.le16(pos + 3));
            p.gif_frame[2] = static_cast<int>(r.le16(pos + 5));
            p.gif_frame[3] = static_cast<int>(r.le16(pos + 7));
            const uint32_t local = r.u8(pos + 9);
            if (!r.ok) break;
            p.gif_has_frame = true;
            size_t pal_at = global_at, entries = global_entries;
            if (local & 0x80) {
                pal_at = pos + 10;
                entries = size_t{1} << ((local & 7) + 1);
            }
            const bool has_palette = entries > 0 && gif_palette_needed(r, pal_at, entries);
            r.ok = true;  // a short palette only decides the mode; stb reports the truncation
            p.mode = has_palette ? "P" : "L";
            const size_t fill = transparency >= 0 ? static_cast<size_t>(transparency) : 0;
            for (size_t c = 0; c < 3; ++c)
                p.gif_fill[c] = static_cast<uint8_t>(
                    !has_palette ? fill : fill < entries ? r.u8(pal_at + 3 * fill + c) : 0);
            r.ok = true;
            break;
        } else {
            break;  // trailer or garbage: no frame, stb reports it
        }
    }
    r.ok = true;
}

/// BMP: as BmpImagePlugin._bitmap — palettes that are a grey ramp open as "L" (or "1"), 32-bit
/// pixels carry alpha only with BITFIELDS masks that include it.
inline void probe_bmp(byte_reader& r, format_probe& p) {
    p.format = "BMP";
    const uint32_t header_size = r.le32(14);
    uint32_t bits = 0, compression = 0, colours = 0;
    size_t palette_at = 14 + header_size, entry = 4;
    if (header_size == 12) {
        p.width = r.le16(18);
        p.height = r.le16(20);
        bits = r.le16(24);
        entry = 3;
    } else if (header_size >= 40) {
        p.width = r.le32(18);
        const uint32_t h = r.le32(22);  // negative: stored top-down
        p.height = h & 0x80000000u ? 0u - h : h;
        bits = r.le16(28);
        compression = r.le32(30);
        colours = r.le32(46);
    } else {
        return;
    }
    if (!r.ok) {
        r.ok = true;
        return;
    }
    constexpr uint32_t bitfields = 3;
    // With BITFIELDS the masks follow the 40-byte header or sit inside a larger one: offset 54
    // either way; alpha exists only in headers of 56 bytes and more.
    const uint32_t rm = r.le32(54), gm = r.le32(58), bm = r.le32(62);
    const uint32_t am = header_size >= 56 ? r.le32(66) : 0;
    r.ok = true;
    if (bits == 1 || bits == 4 || bits == 8) {
        if (colours == 0) colours = 1u << bits;
        bool grey = true;
        for (uint32_t i = 0; grey && i < (colours == 2 ? 2u : colours); ++i) {
            const uint32_t want = colours == 2 ? (i ? 255u : 0u) : (i & 255u);  // Pillow's o8(i)
            for (size_t c = 0; c < 3; ++c)
                if (r.u8(palette_at + i * entry + c) != want || !r.ok) grey = false;
        }
        r.ok = true;
        p.mode = grey ? (colours == 2 ? "1" : "L") : "P";
    } else if (bits == 16) {
        p.mode = "RGB";
        if (compression == 0 || (compression == bitfields && rm == 0x7C00 && gm == 0x3E0 && bm == 0x1F))
            p.bmp_16bit_green_bits = 5;
        else if (compression == bitfields && rm == 0xF800 && gm == 0x7E0 && bm == 0x1F)
            p.bmp_16bit_green_bits = 6;
    } else if (bits == 32 && compression == bitfields) {
        const bool alpha = (rm == 0xFF000000u && gm == 0xFF0000 && bm == 0xFF00 && am == 0xFF) ||
                           (rm == 0xFF && gm == 0xFF00 && bm == 0xFF0000 && am == 0xFF000000u) ||
                           (rm == 0xFF0000 && gm == 0xFF00 && bm == 0xFF && am == 0xFF000000u) ||
                           (rm == 0 && gm == 0 && bm == 0 && am == 0);
        p.mode = alpha ? "RGBA" : "RGB";
    } else {
        p.mode = "RGB";
    }
}

/// PNM as Pillow's PpmImagePlugin: P4 (raw) and P1 (plain) bitmaps open as "1" (no maxval in
/// the header), P5 as "L" ("I" deeper than 8 bits), P6 as "RGB". Header tokens as
/// PpmImageFile._read_token: whitespace separated, '#' comments to end of line. A malformed
/// header sets `pnm_error`, naming the field.
inline void probe_pnm(byte_reader& r, format_probe& p) {
    p.format = "PNM";
    p.pnm_kind = static_cast<char>(r.u8(1));
    const bool bitmap = p.pnm_kind == '1' || p.pnm_kind == '4';
    p.mode = bitmap ? "1" : p.pnm_kind == '5' ? "L" : "RGB";
    const uint32_t after_magic = r.u8(2);
    if (!(after_magic == ' ' || after_magic == '\t' || after_magic == '\n' || after_magic == '\r' ||
          after_magic == '\v' || after_magic == '\f')) {
        p.pnm_error = "no whitespace after the magic number P" + std::string(1, p.pnm_kind);
        return;
    }
    size_t pos = 2;
    const char* fields[3] = {"width", "height", "maxval"};
    long long values[3] = {0, 0, 255};
    for (int f = 0; f < (bitmap ? 2 : 3); ++f) {
        std::string token;
        while (pos < r.size && token.size() <= 10) {
            const char c = static_cast<char>(r.data[pos++]);
            if (c == '#') {
                while (pos < r.size && r.data[pos] != '\r' && r.data[pos] != '\n') ++pos;
                continue;
            }
            if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f') {
                if (token.empty()) continue;
                break;
            }
            token += c;
        }
        const std::string field = fields[f];
        if (token.empty()) {
            p.pnm_error = "header ends before the " + field + " (truncated)";
            return;
        }
        if (token.size() > 10 || token.find_first_not_of("0123456789") != std::string::npos) {
            p.pnm_error = "header " + field + " '" + token.substr(0, 12) + "' is not a positive integer";
            return;
        }
        values[f] = std::stoll(token);
        if (values[f] == 0 || (f < 2 && values[f] > 0x7FFFFFFFll) || (f == 2 && values[f] > 65535)) {
            p.pnm_error = "header " + field + " " + token + " is out of range (" +
                          (f == 2 ? "1..65535" : "1..2147483647") + ")";
            return;
        }
    }
    p.width = static_cast<uint32_t>(values[0]);
    p.height = static_cast<uint32_t>(values[1]);
    p.pnm_maxval = static_cast<int>(values[2]);
    p.pnm_data_at = pos;  // one whitespace byte after the last header field, as Pillow reads it
    p.load_16 = p.pnm_maxval > 255;
    if (p.pnm_kind == '5' && p.load_16) p.mode = "I";
}

/// TGA (no magic number: stb tries it last, and so does this): image type and depth decide.
/// The size is left to stb, which first checks that the bytes are a TGA at all.
inline void probe_tga(byte_reader& r, format_probe& p) {
    p.format = "TGA";
    const uint32_t type = r.u8(2), depth = r.u8(16), flags = r.u8(17);
    if (!r.ok) {
        r.ok = true;
        return;
    }
    if (type == 3 || type == 11) p.mode = depth == 1 ? "1" : depth == 16 ? "LA" : "L";
    else if (type == 1 || type == 9) p.mode = "P";
    else p.mode = depth == 32 ? "RGBA" : "RGB";
    p.flip_horizontal = (flags & 0x10) != 0;
}

/// JPEG: the size from the first start-of-frame marker (the mode comes from stb's component count).
inline void probe_jpeg(byte_reader& r, format_probe& p) {
    p.format = "JPEG";
    size_t pos = 2;
    while (r.ok && pos + 4 <= r.size) {
        if (r.u8(pos) != 0xFF) return;
        const uint32_t marker = r.u8(pos + 1);
        if (marker == 0xFF) {  // fill byte
            ++pos;
            continue;
        }
        if (marker >= 0xC0 && marker <= 0xCF && marker != 0xC4 && marker != 0xC8 && marker != 0xCC) {
            const uint32_t h = (r.u8(pos + 5) << 8) | r.u8(pos + 6);
            const uint32_t w = (r.u8(pos + 7) << 8) | r.u8(pos + 8);
            if (r.ok) {
                p.width = w;
                p.height = h;
            }
            break;
        }
        if (marker == 0xD8 || (marker >= 0xD0 && marker <= 0xD7) || marker == 0x01) {
            pos += 2;
            continue;
        }
        pos += 2 + ((r.u8(pos + 2) << 8) | r.u8(pos + 3));
    }
    r.ok = true;
}

/// Identifies the format from its signature and reads the mode from its header.
inline format_probe probe_image_format(const uint8_t* data, size_t size) {
    byte_reader r{data, size};
    format_probe p;
    if (r.starts_with("\x89PNG\r\n\x1a\n", 8)) probe_png(r, p);
    else if (r.starts_with("\xff\xd8\xff", 3)) probe_jpeg(r, p);
    else if (r.starts_with("GIF87a", 6) || r.starts_with("GIF89a", 6)) probe_gif(r, p);
    else if (r.starts_with("BM", 2)) probe_bmp(r, p);
    else if (r.starts_with("P1", 2) || r.starts_with("P4", 2) || r.starts_with("P5", 2) || r.starts_with("P6", 2))
        probe_pnm(r, p);
    else probe_tga(r, p);
    return p;
}

}  // namespace zeroclip::detail
