"""Tokenizer: ALBERT ids and normalisation, HF AlbertTokenizer parity, round trips, bad input."""
import io
import string
import unicodedata

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minialbert import Tokenizer
from minialbert.data import load_default_corpus
from minialbert.tokenizer import ALBERT_USER_SYMBOLS, SPIECE_UNDERLINE, preprocess_text, truncate_longest_first

UNICODE_LINES = [
    "Une phrase très accentuée, où l'on naît à Noël.",
    "Straße, Ærø, naïve café — “quotes” and ``latex quotes''.",
    "Ｆｕｌｌ－ｗｉｄｔｈ ＡＳＣＩＩ and ligatures ﬁ ﬂ.",
    "Prices: £5, €10 – 20 (approx.) \"quoted\".",
    "日本語のテキストと中文文本。",
]


@pytest.fixture(scope="module")
def corpus():
    docs = load_default_corpus(include_numpy=False)
    return docs[:500] + [UNICODE_LINES]


@pytest.fixture(scope="module")
def tok(corpus):
    return Tokenizer.train(corpus, 1000)


def test_special_ids_and_user_symbols(tok):
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 1, 2, 3, 4)
    assert tok.id_to_piece([0, 1, 2, 3, 4]) == ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]
    # the official --user_defined_symbols follow the control symbols, in order
    assert tok.id_to_piece(range(5, 5 + len(ALBERT_USER_SYMBOLS))) == list(ALBERT_USER_SYMBOLS)
    assert tok.vocab_size == len(tok) == 1000
    assert tok.lowercase


def test_control_symbols_not_matched_in_text(tok):
    ids = tok.encode("[MASK] [CLS]")
    assert not set(ids) & {tok.cls_id, tok.sep_id, tok.mask_id}


def test_normalisation(tok):
    assert preprocess_text("  Héllo\t\tWörld \n ``x''  ") == 'hello world "x"'
    assert preprocess_text("ABC", lowercase=False) == "ABC"
    assert tok.encode("Café NAÏVE") == tok.encode("cafe naive")
    assert tok.encode("a   b\n\tc") == tok.encode("a b c")
    assert tok.encode("") == [] and tok.encode("   \n ") == []


def test_training_is_deterministic_and_saves(tok, corpus, tmp_path):
    again = Tokenizer.train(corpus, 1000)
    assert again.content_hash == tok.content_hash
    path = tok.save(tmp_path / "spiece")
    assert path.name == "spiece.model" and not list(tmp_path.glob("*.tmp*"))
    for src in (path, str(path), path.read_bytes(), io.BytesIO(path.read_bytes())):
        loaded = Tokenizer(src)
        assert loaded.content_hash == tok.content_hash and loaded.lowercase
        assert loaded.encode(UNICODE_LINES[1]) == tok.encode(UNICODE_LINES[1])
    out = Tokenizer.train(corpus[:50], 300, output=tmp_path / "small.model")
    assert Tokenizer(tmp_path / "small.model").content_hash == out.content_hash


def test_pickles(tok):
    import pickle
    again = pickle.loads(pickle.dumps(tok))
    assert again.content_hash == tok.content_hash and again.encode(UNICODE_LINES[0]) == tok.encode(UNICODE_LINES[0])


def test_cased_model_is_detected(corpus):
    cased = Tokenizer.train(corpus[:100], 400, lowercase=False)
    assert not cased.lowercase
    assert not Tokenizer(cased.model_proto).lowercase  # detected from its upper-case pieces
    assert cased.encode("Hello") != cased.encode("hello")


_ALPHABET = string.ascii_letters + string.digits + " .,;:()-!?\"'éèüñçà"


@given(st.text(alphabet=_ALPHABET, max_size=80))
def test_round_trip_up_to_normalisation(tok, text):
    ids = tok.encode(text)
    assert all(0 <= i < tok.vocab_size for i in ids)
    if tok.unk_id in ids:  # a character the small vocabulary never saw
        return
    assert tok.decode(ids) == preprocess_text(text)


def test_decode_specials(tok):
    ids = tok("hello world", "second part")["input_ids"]
    assert tok.decode(ids) == "hello world second part"
    assert tok.decode(ids, skip_special_tokens=False) == "[CLS] hello world [SEP] second part [SEP]"


def test_call_single_pair_and_batch(tok):
    a, b = tok.encode("the first text"), tok.encode("and a second one")
    one = tok("the first text")
    assert one["input_ids"] == [2, *a, 3] and one["token_type_ids"] == [0] * (len(a) + 2)
    assert one["attention_mask"] == [1] * (len(a) + 2)
    pair = tok("the first text", "and a second one")
    assert pair["input_ids"] == [2, *a, 3, *b, 3]
    assert pair["token_type_ids"] == [0] * (len(a) + 2) + [1] * (len(b) + 1)
    batch = tok(["the first text", "x"], ["and a second one", "y"], padding=True, return_tensors="np")
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (2, len(a) + len(b) + 3)
    assert batch["input_ids"][0].tolist() == pair["input_ids"]
    n1 = int(batch["attention_mask"][1].sum())
    assert (batch["input_ids"][1, n1:] == tok.pad_id).all() and (batch["token_type_ids"][1, n1:] == 0).all()
    padded = tok("the first text", max_length=20, padding="max_length")
    assert len(padded["input_ids"]) == 20 and sum(padded["attention_mask"]) == len(a) + 2


@pytest.mark.parametrize("la,lb,budget,want", [
    (3, 100, 10, (3, 7)), (100, 3, 10, (7, 3)), (10, 10, 5, (2, 3)), (11, 10, 5, (3, 2)),
    (4, 4, 8, (4, 4)), (9, 2, 6, (4, 2)),
])
def test_truncate_longest_first(la, lb, budget, want):
    a, b = truncate_longest_first(list(range(la)), list(range(lb)), budget)
    assert (len(a), len(b)) == want and a == list(range(len(a))) and b == list(range(len(b)))


def test_truncation_and_errors(tok):
    long = "word " * 50
    out = tok(long, long, max_length=16)
    assert len(out["input_ids"]) == 16 and out["input_ids"].count(tok.sep_id) == 2
    with pytest.raises(ValueError, match="truncation"):
        tok(long, max_length=16, truncation=False)
    with pytest.raises(ValueError, match="max_length"):
        tok("x", "y", max_length=2)
    with pytest.raises(ValueError, match="padding"):
        tok("x", padding="sideways")
    with pytest.raises(ValueError, match="text_b"):
        tok(["a", "b"], ["c"])


def test_bad_training_input(corpus):
    with pytest.raises(ValueError, match="empty"):
        Tokenizer.train([], 100)
    with pytest.raises(ValueError, match="empty"):
        Tokenizer.train(["", "   ", "\n"], 100)
    with pytest.raises(ValueError, match=r"vocab_size=50000 is too large.*vocab_size <= \d+"):
        Tokenizer.train(corpus[:20], 50000)
    with pytest.raises(ValueError, match="must exceed"):
        Tokenizer.train(corpus, 10)


def test_digit_comma_pieces_are_resplit(corpus):
    # the reference encode_pieces re-splits a piece ending in "<digit>," so the comma stands
    # alone; force such pieces into a model as user-defined symbols to exercise it
    digits = ["9 19 99 1999 29 5 and 9.5 or 19."] * 20               # so "9" exists on its own
    t = Tokenizer.train(corpus[:100] + [digits], 400, user_defined_symbols=ALBERT_USER_SYMBOLS + ("9,", "▁19,"))
    assert t._digit_comma == {t.piece_to_id("9,"), t.piece_to_id("▁19,")}
    text = "in 1999, and 19, then 9, or 29,5"
    pieces = t.tokenize(text)
    assert not any(len(p) > 1 and p.endswith(",") and p[-2].isdigit() for p in pieces)
    assert pieces.count(",") == 4 and t.decode(t.encode(text)) == text
    # the batch path (used by __call__ and create_pretraining_examples) re-splits too
    assert t.encode_batch(["no digits here", text])[1] == t.encode(text) == t(text)["input_ids"][1:-1]
    raw = t.sp.encode(text, out_type=str)
    assert "9," in raw or "▁19," in raw                          # SentencePiece alone keeps them


def test_undecodable_text(tok):
    with pytest.raises(ValueError, match="surrogate"):
        tok.encode("ok \udcff not ok")
    with pytest.raises(ValueError, match="surrogate"):
        Tokenizer.train(["fine text here"] * 30 + ["bad \ud800"], 30)
    with pytest.raises(ValueError, match="decode"):
        tok.encode(b"bytes")


def test_bad_model_file(tmp_path):
    with pytest.raises(FileNotFoundError):
        Tokenizer(tmp_path / "missing.model")
    (tmp_path / "junk.model").write_bytes(b"not a model")
    with pytest.raises(ValueError, match="model_file"):
        Tokenizer(tmp_path / "junk.model")


def test_train_from_files(tmp_path):
    (tmp_path / "a.txt").write_text("\n".join(UNICODE_LINES * 20), encoding="utf-8")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.txt").write_text("more text here.\nand here.\n" * 50, encoding="utf-8")
    t1 = Tokenizer.train(tmp_path, 60)
    t2 = Tokenizer.train([tmp_path / "a.txt", tmp_path / "sub" / "b.txt"], 60)
    assert t1.content_hash == t2.content_hash
    (tmp_path / "bad.txt").write_bytes(b"fine\n\xff\xfe broken")
    with pytest.raises(ValueError, match=r"bad\.txt.*byte offset 5"):
        Tokenizer.train(tmp_path, 60)


# -- HF parity ----------------------------------------------------------------------
def _proto_fields(buf: bytes):
    """Minimal protobuf wire-format reader (SentencePiece's ModelProto), so the test
    needs no protobuf package: yields (field number, value)."""
    def varint(i):
        r = s = 0
        while True:
            c = buf[i]
            i += 1
            r |= (c & 0x7F) << s
            s += 7
            if c < 0x80:
                return r, i
    i = 0
    while i < len(buf):
        key, i = varint(i)
        field, wire = key >> 3, key & 7
        if wire == 0:
            v, i = varint(i)
        elif wire == 2:
            n, i = varint(i)
            v, i = buf[i:i + n], i + n
        elif wire == 5:
            v, i = buf[i:i + 4], i + 4
        elif wire == 1:
            v, i = buf[i:i + 8], i + 8
        else:
            raise ValueError(f"wire type {wire}")
        yield field, v


def hf_albert_tokenizer(tok):
    """HF AlbertTokenizer built the way albert-base-v2's tokenizer.json is: the model's
    pieces and scores in a Unigram, its precompiled normaliser, ALBERT's templates."""
    transformers = pytest.importorskip("transformers")
    normalizer = dict(_proto_fields(tok.model_proto))[3]          # ModelProto.normalizer_spec
    charsmap = dict(_proto_fields(normalizer)).get(2)             # NormalizerSpec.precompiled_charsmap
    vocab = [(tok.sp.id_to_piece(i), tok.sp.get_score(i)) for i in range(tok.vocab_size)]
    return transformers.AlbertTokenizer(vocab=vocab, _spm_precompiled_charsmap=charsmap)


def test_ids_equal_hf_albert_tokenizer(tok, corpus):
    hf = hf_albert_tokenizer(tok)
    texts = [s for d in corpus[::7] for s in d][:400] + UNICODE_LINES + ["", "  spaced   out  ", "A,B;C"]
    for t in texts:
        assert tok.encode(t) == hf(t, add_special_tokens=False)["input_ids"], t
        assert tok(t)["input_ids"] == hf(t)["input_ids"], t
    pairs = list(zip(texts[:60], texts[60:120]))
    ours = tok([a for a, _ in pairs], [b for _, b in pairs], max_length=24, padding="max_length")
    theirs = hf([a for a, _ in pairs], [b for _, b in pairs], max_length=24, padding="max_length",
                truncation="longest_first", return_token_type_ids=True)
    for k in ("input_ids", "token_type_ids", "attention_mask"):
        assert ours[k] == theirs[k], k
    assert hf.convert_ids_to_tokens(list(range(5))) == ["<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]"]


@pytest.fixture(scope="module")
def hf_tok(tok):
    return hf_albert_tokenizer(tok)


@pytest.mark.parametrize("padding", [False, True, "longest", "max_length"])
@pytest.mark.parametrize("max_length", [3, 5, 13, 40, None])
def test_call_equals_hf_on_batches_of_pairs(tok, hf_tok, corpus, padding, max_length):
    # every padding mode, longest-first truncation down to empty segments, pairs and singles,
    # batched and one at a time: input_ids, token_type_ids and attention_mask as HF gives them
    if padding == "max_length" and max_length is None:
        pytest.skip("max_length padding needs a max_length")
    texts = [s for d in corpus[::5] for s in d][:300] + UNICODE_LINES
    rng = np.random.default_rng(0)
    a = [texts[i] for i in rng.integers(0, len(texts), 24)]
    b = [texts[i] for i in rng.integers(0, len(texts), 24)]
    kw = dict(max_length=max_length, padding=padding)
    hkw = dict(kw, truncation="longest_first" if max_length else False, return_token_type_ids=True)
    keys = ("input_ids", "token_type_ids", "attention_mask")
    for text_b in (b, None):
        ours, theirs = tok(a, text_b, **kw), hf_tok(a, text_b, **hkw)
        for k in keys:
            assert ours[k] == theirs[k], (k, text_b is None)
        one = tok(a[0], None if text_b is None else b[0], **kw)
        assert one == {k: hf_tok(a[0], None if text_b is None else b[0], **hkw)[k] for k in keys}
    if max_length:
        assert max(map(len, ours["input_ids"])) <= max_length
        assert ours["input_ids"] != tok(a)["input_ids"]          # something was actually cut


# Three documented differences with HF 5 (we follow the reference preprocess_text):
# 1. Python's str.split() splits on control characters such as \x0b, \x0c, \x1c-\x1f first;
#    HF runs the model's normaliser first, which deletes them ("0\x0b0": "0 0" vs "00").
# 2. Accents. The reference applies NFKD, then drops the characters with a non-zero
#    canonical combining class (unicodedata.combining), all with Python's Unicode tables
#    (14.0 in Python 3.11). HF's NFKD + StripAccents differ on 1467 characters:
#    - StripAccents drops every character of a Mark category (Mn, Mc, Me), so class-0 marks
#      differ: U+1A61 TAI THAM VOWEL SIGN A, U+0903 DEVANAGARI SIGN VISARGA (Mc), U+034F. The
#      reference keeps them and SentencePiece makes them "<unk>" here; HF deletes them.
#    - HF's Unicode tables are older: marks added later, e.g. U+11D42 MASARAM GONDI SIGN
#      NUKTA (class 7, Unicode 10), are kept by HF and dropped by the reference, and a few
#      newer compatibility decompositions (U+A7F2, U+10781) are not applied by HF.
#    The test skips text holding a character on which the two step pairs disagree
#    (_hf_strips_differently); test_marks_follow_the_reference pins our side.
# 3. HF matches special-token strings such as "<pad>" or "[MASK]" in raw text; SentencePiece
#    and the reference do not.
# They are left out of the generated text. The explore profile (6000 strings a run) found
# nothing else except exact ties (docs/testing.md has the counts).
_NO_SEPARATORS = st.one_of(st.characters(blacklist_categories=("Cs", "Cc")), st.sampled_from("\t\n\r"))


def _reference_accents(text):
    text = unicodedata.normalize("NFKD", text)
    return "".join(c for c in text if not unicodedata.combining(c))


def _hf_strips_differently(c, _memo={}):
    """True where HF's NFKD + StripAccents and the reference's NFKD + combining filter differ on c."""
    if c.isascii():
        return False
    if c not in _memo:
        from tokenizers import normalizers
        steps = normalizers.Sequence([normalizers.NFKD(), normalizers.StripAccents()])
        _memo[c] = steps.normalize_str(c) != _reference_accents(c)
    return _memo[c]


@pytest.mark.parametrize("char,kept", [("\u1a61", True), ("\u0903", True), ("\U00011d42", False)])
def test_marks_follow_the_reference(tok, char, kept):
    # U+1A61 and U+0903 (Mc) have combining class 0: the reference keeps them and
    # SentencePiece, which has no piece for them, gives "<unk>"; U+11D42 (Mn, class 7) goes
    assert (preprocess_text(char) == char) is kept and (preprocess_text(char) == "") is (not kept)
    assert tok.encode(char) == ([tok.piece_to_id(SPIECE_UNDERLINE), tok.unk_id] if kept else [])
    assert tok.encode("a" + char) == tok.encode("a") + ([tok.unk_id] if kept else [])


@settings(max_examples=12 * settings.default.max_examples)  # 300; 6000 under explore
@given(st.text(alphabet=_NO_SEPARATORS, max_size=40))
def test_ids_equal_hf_on_random_unicode(tok, hf_tok, text):
    if any(s in text for s in ("<pad>", "<unk>", "[CLS]", "[SEP]", "[MASK]")) or \
            any(_hf_strips_differently(c) for c in text):
        return
    ours, theirs = tok.encode(text), hf_tok(text, add_special_tokens=False)["input_ids"]
    # an exact tie is broken differently by the two Viterbi implementations (e.g.
    # "0000000" as 00 00 0 00 or 0 00 00 00): the same pieces, so the same Viterbi score, and the
    # same text -- anything else is a real difference
    assert ours == theirs or (sorted(ours) == sorted(theirs) and
                              "".join(tok.id_to_piece(ours)) == "".join(tok.id_to_piece(theirs))), (ours, theirs)
