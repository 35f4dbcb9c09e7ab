"""zeroclip weights tools: convert OpenAI CLIP checkpoints to zeroclip's safetensors format
(convert.py), describe checkpoints (info.py), write random-weight models (make_random.py).
numpy only; see README.md."""
