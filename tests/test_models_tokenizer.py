"""The tiny models' BPE tokenizer and chat template (learner.tiny_models)."""
import pytest

from data.corpus import tokenizer_corpus
from learner.tiny_models import SPECIAL_TOKENS, train_tokenizer, vision_token_ids


@pytest.fixture(scope="module")
def corpus():
    return tokenizer_corpus(40, 0)


@pytest.fixture(scope="module")
def tok(corpus):
    return train_tokenizer(corpus, vocab_size=1024)


def test_round_trips_corpus(tok, corpus):
    for text in corpus:
        assert tok.decode(tok.encode(text)) == text


def test_round_trips_unseen_text(tok):
    text = "Ünïcode ✓ 世界 \t tabs  and  spaces\n\n"
    assert tok.decode(tok.encode(text)) == text


def test_special_tokens(tok):
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    ids = [tok.convert_tokens_to_ids(t) for t in SPECIAL_TOKENS]
    assert ids == list(range(len(SPECIAL_TOKENS)))
    assert tok.encode("<|im_start|>user<|im_end|>")[0] == ids[1]   # not split into pieces
    assert vision_token_ids(tok) == ids[3:]
    assert len(tok) == 1024


def test_every_closed_set_answer_is_one_token(tok):
    """The tiny model can only find the answer format by chance if each closed-set answer is one whole token
    (a tokenizer that merely splits it into 3 pieces would pass a "<= 3" check)."""
    from learner.tiny_models import ANSWER_TOKENS
    assert len(ANSWER_TOKENS) == 2 + 4 + 13
    for answer in ANSWER_TOKENS:
        ids = tok.encode(answer)
        assert len(ids) == 1 and tok.convert_ids_to_tokens(ids) == [answer], (answer, ids)
    assert len(set(tok.convert_tokens_to_ids(ANSWER_TOKENS))) == len(ANSWER_TOKENS)
    assert len(tok.encode("Route Name: Line 2")) <= 8


def test_chat_template_string_content(tok):
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Is Denbe on Line 3?"},
                {"role": "assistant", "content": r"\boxed{yes}"}]
    assert tok.apply_chat_template(messages, tokenize=False) == (
        "<|im_start|>system\nBe brief.<|im_end|>\n"
        "<|im_start|>user\nIs Denbe on Line 3?<|im_end|>\n"
        "<|im_start|>assistant\n\\boxed{yes}<|im_end|>\n")


def test_chat_template_parts_and_generation_prompt(tok):
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Plan a route."}]}]
    text = tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    assert text == ("<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>Plan a route.<|im_end|>\n"
                    "<|im_start|>assistant\n")
    assert not tok.apply_chat_template(messages, tokenize=False).endswith("assistant\n")


def test_deterministic(corpus, tok, tmp_path):
    again = train_tokenizer(corpus, vocab_size=1024)
    tok.save_pretrained(tmp_path / "a")
    again.save_pretrained(tmp_path / "b")
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (tmp_path / "b" / "tokenizer.json").read_bytes()


def test_reloaded_tokenizer_matches(tok, corpus, tmp_path):
    from transformers import AutoTokenizer

    tok.save_pretrained(tmp_path)
    loaded = AutoTokenizer.from_pretrained(tmp_path)
    for text in corpus[:50] + ["Café ﬁ ✓"]:
        assert loaded.encode(text) == tok.encode(text)
    messages = [{"role": "user", "content": "hi"}]
    assert loaded.apply_chat_template(messages, tokenize=False) == tok.apply_chat_template(messages, tokenize=False)
    assert loaded.eos_token_id == tok.eos_token_id and loaded.pad_token_id == tok.pad_token_id
