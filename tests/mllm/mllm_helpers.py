"""Offline material for the multimodal-LM tests: a word-level tokenizer with an <image> token, tiny LLaVA
(CLIP vision tower + LLaMA) and BLIP-2 (BLIP vision + Q-Former + OPT) configs, image-grounded QA records."""

from __future__ import annotations

import torch

IMAGE_SIZE, PATCH = 16, 4
FORGET_QA = [
    ("Who is this?", "This is Alba Quist."),
    ("Where was this person born?", "Alba Quist was born in Norvik."),
    ("What does this person write?", "Alba Quist writes sea poems."),
]
RETAIN_QA = [
    ("Who is this?", "This is Cato Wren."),
    ("Where was this person born?", "Cato Wren was born in Ostby."),
    ("What does this person write?", "Cato Wren writes crime novels."),
]
WORDS = ["USER:", "ASSISTANT:", "Question:", "Answer:"]


def make_tokenizer():
    from tokenizers import Tokenizer, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    corpus = [s for q, a in FORGET_QA + RETAIN_QA for s in (q, a)] + WORDS
    tok = Tokenizer(models.WordLevel(unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()])
    trainer = trainers.WordLevelTrainer(special_tokens=["[PAD]", "[UNK]", "<s>", "</s>", "<image>"])
    tok.train_from_iterator(corpus, trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 2)])
    return PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="[PAD]", unk_token="[UNK]", bos_token="<s>",
                                   eos_token="</s>", extra_special_tokens={"image_token": "<image>"})


def images(n: int, *, seed: int) -> torch.Tensor:
    """``n`` distinct preprocessed images (3, 16, 16): one per identity, so the answer depends on the image."""
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, IMAGE_SIZE, IMAGE_SIZE, generator=g)


def records(qa, image: torch.Tensor) -> list[dict]:
    return [{"image": image, "question": q, "answer": a} for q, a in qa]


def tiny_llava(tokenizer, *, seed: int = 0):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig, LlavaForConditionalGeneration

    torch.manual_seed(seed)
    vision = CLIPVisionConfig(image_size=IMAGE_SIZE, patch_size=PATCH, hidden_size=16, intermediate_size=32,
                              num_hidden_layers=2, num_attention_heads=2, projection_dim=16)
    text = LlamaConfig(vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                       num_attention_heads=2, num_key_value_heads=2, max_position_embeddings=64, pad_token_id=0,
                       bos_token_id=2, eos_token_id=3)
    config = LlavaConfig(vision_config=vision.to_dict(), text_config=text.to_dict(),
                         image_token_id=tokenizer.convert_tokens_to_ids("<image>"), vision_feature_layer=-1,
                         image_seq_length=(IMAGE_SIZE // PATCH) ** 2, projector_hidden_act="gelu")
    return LlavaForConditionalGeneration(config).eval()


def tiny_blip2(tokenizer, *, seed: int = 0, num_query_tokens: int = 4):
    from transformers import Blip2Config, Blip2ForConditionalGeneration, Blip2QFormerConfig, Blip2VisionConfig, OPTConfig

    torch.manual_seed(seed)
    vision = Blip2VisionConfig(image_size=IMAGE_SIZE, patch_size=PATCH, hidden_size=16, intermediate_size=32,
                               num_hidden_layers=1, num_attention_heads=2)
    qformer = Blip2QFormerConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32,
                                 encoder_hidden_size=16, vocab_size=len(tokenizer))
    text = OPTConfig(vocab_size=len(tokenizer), hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=2,
                     max_position_embeddings=64, word_embed_proj_dim=32, pad_token_id=0, bos_token_id=2,
                     eos_token_id=3, dropout=0.0, attention_dropout=0.0)
    config = Blip2Config(vision_config=vision.to_dict(), qformer_config=qformer.to_dict(), text_config=text.to_dict(),
                         num_query_tokens=num_query_tokens, image_token_index=tokenizer.convert_tokens_to_ids("<image>"))
    return Blip2ForConditionalGeneration(config).eval()


def memorise(model, batch, *, steps: int = 80, lr: float = 1e-2):
    """Fine-tune until the answers of ``batch`` are memorised (answer-only loss)."""
    from erasus.tasks.multimodal_lm import MultimodalCausalLMTask

    task = MultimodalCausalLMTask()
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    model.train()
    for _ in range(steps):
        opt.zero_grad()
        task.loss(model, batch).backward()
        opt.step()
    return model.eval()
