//! zeroclip::detail — JPEG through libjpeg-turbo (when the build found it: ZEROCLIP_WITH_LIBJPEG),
//! with Pillow's settings, so the decoded pixels are Pillow's own: the default "islow" integer
//! IDCT, fancy upsampling, output JCS_RGB or JCS_GRAYSCALE (Pillow's "RGB" and "L" modes), and in
//! draft mode the DCT scaling 1/2, 1/4 or 1/8 that Pillow's draft() asks for. Rows are decoded
//! straight into the output; the file is read through image_source, never whole. Errors go
//! through libjpeg's error manager (setjmp/longjmp, never exit()); a file that ends before the
//! last row is refused, as Pillow refuses it unless LOAD_TRUNCATED_IMAGES is set.
#pragma once

#if defined(ZEROCLIP_WITH_LIBJPEG)

#include <algorithm>
#include <csetjmp>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <string>
#include <vector>

#include <jpeglib.h>
#include <jerror.h>

#include "../../error.hpp"
#include "source.hpp"

namespace zeroclip::detail {

struct jpeg_turbo_error {
    jpeg_error_mgr pub;
    std::jmp_buf jump;
    char message[JMSG_LENGTH_MAX];
};

struct jpeg_turbo_source {
    jpeg_source_mgr pub;
    image_source* src;
    JOCTET* buffer;
    size_t capacity;
    bool ended;  ///< the file ended where libjpeg wanted more
};

extern "C" {
inline void zc_jpeg_error_exit(j_common_ptr cinfo) {
    auto* err = reinterpret_cast<jpeg_turbo_error*>(cinfo->err);
    (*cinfo->err->format_message)(cinfo, err->message);
    std::longjmp(err->jump, 1);
}
inline void zc_jpeg_output_message(j_common_ptr) {}  // warnings (corrupt data libjpeg repairs) are silent, as in Pillow
inline void zc_jpeg_init_source(j_decompress_ptr) {}
inline boolean zc_jpeg_fill_input_buffer(j_decompress_ptr cinfo) {
    auto* s = reinterpret_cast<jpeg_turbo_source*>(cinfo->src);
    const size_t got = s->src->read(s->buffer, s->capacity);
    if (got == 0) {
        s->ended = true;
        cinfo->err->msg_code = JERR_INPUT_EOF;
        (*cinfo->err->error_exit)(reinterpret_cast<j_common_ptr>(cinfo));
    }
    s->pub.next_input_byte = s->buffer;
    s->pub.bytes_in_buffer = got;
    return TRUE;
}
inline void zc_jpeg_skip_input_data(j_decompress_ptr cinfo, long n) {
    auto* s = reinterpret_cast<jpeg_turbo_source*>(cinfo->src);
    if (n <= 0) return;
    if (static_cast<size_t>(n) <= s->pub.bytes_in_buffer) {
        s->pub.next_input_byte += n;
        s->pub.bytes_in_buffer -= static_cast<size_t>(n);
        return;
    }
    s->src->seek(s->src->tell() + (static_cast<uint64_t>(n) - s->pub.bytes_in_buffer));
    s->pub.bytes_in_buffer = 0;
}
inline void zc_jpeg_term_source(j_decompress_ptr) {}
}

/// What decode_jpeg_turbo made: `handled` false means "not for libjpeg here" (CMYK and other
/// component counts stay with stb_image, unchanged).
struct jpeg_turbo_result {
    bool handled = false;
    bool grey = false;
    raster image;
};

/// Decodes the JPEG in `src`. `draft_size` > 0: Pillow's draft("RGB", (draft_size, draft_size)),
/// i.e. the scale 1/s, s in {8, 4, 2, 1} the largest not above min(w // n, h // n).
inline jpeg_turbo_result decode_jpeg_turbo(image_source& src, size_t max_pixels, int draft_size) {
    jpeg_turbo_result result;
    jpeg_decompress_struct cinfo{};
    jpeg_turbo_error err{};
    std::vector<JOCTET> buffer(size_t{1} << 16);
    jpeg_turbo_source source{};
    source.src = &src;
    source.buffer = buffer.data();
    source.capacity = buffer.size();
    source.pub.init_source = zc_jpeg_init_source;
    source.pub.fill_input_buffer = zc_jpeg_fill_input_buffer;
    source.pub.skip_input_data = zc_jpeg_skip_input_data;
    source.pub.resync_to_restart = jpeg_resync_to_restart;
    source.pub.term_source = zc_jpeg_term_source;
    src.seek(0);

    cinfo.err = jpeg_std_error(&err.pub);
    err.pub.error_exit = zc_jpeg_error_exit;
    err.pub.output_message = zc_jpeg_output_message;
    // Everything libjpeg may longjmp out of runs below; the objects above outlive it and
    // nothing between here and the jump has a destructor to skip.
    std::string failure;
    volatile bool created = false;  // volatile: read after a longjmp
    volatile uint64_t rows_done = 0;
    if (setjmp(err.jump) == 0) {
        jpeg_create_decompress(&cinfo);
        created = true;
        cinfo.src = &source.pub;
        jpeg_read_header(&cinfo, TRUE);
        if (cinfo.num_components != 1 && cinfo.num_components != 3) {
            jpeg_destroy_decompress(&cinfo);
            return result;  // CMYK/YCCK and others: stb_image as before
        }
        const uint64_t declared = uint64_t{cinfo.image_width} * cinfo.image_height;
        if (declared > max_pixels) {
            failure = "limit";
        } else {
            result.grey = cinfo.num_components == 1;
            cinfo.out_color_space = result.grey ? JCS_GRAYSCALE : JCS_RGB;
            cinfo.dct_method = JDCT_ISLOW;
            cinfo.do_fancy_upsampling = TRUE;
            if (draft_size > 0) {
                const unsigned scale = std::min(cinfo.image_width / static_cast<unsigned>(draft_size),
                                                cinfo.image_height / static_cast<unsigned>(draft_size));
                unsigned s = 1;
                for (unsigned candidate : {8u, 4u, 2u, 1u})
                    if (scale >= candidate) {
                        s = candidate;
                        break;
                    }
                cinfo.scale_num = 1;
                cinfo.scale_denom = s;
            }
            jpeg_start_decompress(&cinfo);
            const size_t channels = result.grey ? 1 : 3;
            result.image.width = static_cast<int>(cinfo.output_width);
            result.image.height = static_cast<int>(cinfo.output_height);
            try {
                result.image.pixels.resize(size_t{cinfo.output_width} * cinfo.output_height * channels);
            } catch (...) {
                jpeg_destroy_decompress(&cinfo);
                throw;
            }
            const size_t stride = size_t{cinfo.output_width} * channels;
            while (cinfo.output_scanline < cinfo.output_height) {
                JSAMPROW row = result.image.pixels.data() + size_t{cinfo.output_scanline} * stride;
                jpeg_read_scanlines(&cinfo, &row, 1);
                rows_done = rows_done + 1;
            }
            // Every row is there: like Pillow, trailing bytes (even a missing EOI) do not matter.
        }
    } else {
        failure = source.ended ? "truncated" : err.message;
    }
    const JDIMENSION width = cinfo.image_width, height = cinfo.image_height, total = cinfo.output_height;
    if (created) jpeg_destroy_decompress(&cinfo);
    const std::string& name = src.name();
    if (failure == "limit")
        ZEROCLIP_THROW(errc::image_decode, name + ": image declares " + std::to_string(width) + "x" + std::to_string(height) +
                                               " = " + std::to_string(uint64_t{width} * height) +
                                               " pixels, over the limit of " + std::to_string(max_pixels) +
                                               " (decompression bomb? raise max_pixels to allow it)");
    if (failure == "truncated")
        ZEROCLIP_THROW(errc::image_decode, name + ": cannot decode JPEG image: file ends after " +
                                               std::to_string(static_cast<uint64_t>(rows_done)) + " of " + std::to_string(total) +
                                               " rows (truncated file)");
    if (!failure.empty())
        ZEROCLIP_THROW(errc::image_decode, name + ": cannot decode JPEG image (libjpeg: " + failure + ")");
    result.handled = true;
    return result;
}

}  // namespace zeroclip::detail

#endif  // ZEROCLIP_WITH_LIBJPEG
