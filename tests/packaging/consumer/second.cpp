#include <zeroclip/zeroclip.hpp>

// A second translation unit that uses the library, so the link proves one-definition safety.
int embed_dim_of(const std::string& model_path) { return zeroclip::load_model(model_path).config().embed_dim; }
