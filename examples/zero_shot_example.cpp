// The README's library example: zero-shot classification of image files in ~20 lines.
// usage: zero_shot_example MODEL IMAGE... (MODEL: a Hugging Face CLIP folder or a .safetensors file)
#include <iostream>
#include <zeroclip/zeroclip.hpp>

int main(int argc, char** argv) try {
    if (argc < 3) return std::cerr << "usage: zero_shot_example MODEL IMAGE...\n", 2;
    zeroclip::model model = zeroclip::load_model(argv[1]);
    zeroclip::zero_shot_classifier<zeroclip::cpu_backend> classifier(
        model, {"red circle", "blue square", "green triangle"}, {"A photo of a {}."});
    std::vector<std::string> files(argv + 2, argv + argc);
    zeroclip::tensor pixels = zeroclip::load_image_batch(files, model.preprocess_options());
    auto top = classifier.classify(pixels, /*top_k=*/2);
    for (size_t i = 0; i < files.size(); ++i)
        for (const zeroclip::prediction& p : top[i])
            std::cout << files[i] << ": " << p.label << " " << p.probability << "\n";
} catch (const zeroclip::error& e) {
    std::cerr << e.what() << "\n";
    return 1;
}
