"""Generation: prompt templates and their one tokenization, the output parser, branch probabilities, the
transformers and vLLM backends."""
