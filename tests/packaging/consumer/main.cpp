#include <iostream>
#include <zeroclip/zeroclip.hpp>

int embed_dim_of(const std::string& model_path);

int main(int argc, char** argv) {
    if (argc != 2) return 2;
    zeroclip::model model = zeroclip::load_model(argv[1]);
    zeroclip::tensor pixels({1, 3, model.config().vision.image_size, model.config().vision.image_size});
    zeroclip::tensor embedding = model.encode_image(pixels);
    std::cout << "embedding " << zeroclip::shape_to_string(embedding.shape()) << "\n";
    return embedding.dim(1) == embed_dim_of(argv[1]) ? 0 : 1;
}
