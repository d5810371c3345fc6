"""Pretraining data: corpora, SOP/NSP examples with n-gram masking, batches and shards.

- :mod:`.corpus`: the embedded default corpus (docstrings of the stdlib, NumPy, SciPy, matplotlib) and the user's text files.
- :mod:`.pretraining`: ``create_pretraining_examples`` (spec §5), ``collate``, ``iterate_batches``,
  ``PretrainingStream`` (examples made on the fly, fresh pairs and masks every epoch).
- :mod:`.heldout`: ``split_documents`` (document-level held-out split).
- :mod:`.shards`: ``build_shards`` (atomic .npz shards + manifest.json), ``ShardLoader`` and
  ``ExampleLoader`` (resumable shuffled batches).
"""
from .corpus import (corpus_hash, load_default_corpus, load_text_corpus,  # noqa: F401
                     read_text_file, split_sentences)
from .pretraining import (SENTENCE_TASKS, EmptyCorpusError, PretrainingStream, check_data_args,  # noqa: F401
                          collate,
                          create_pretraining_examples, iterate_batches, mask_tokens,
                          tokenize_documents, word_start_table)
from .heldout import split_documents  # noqa: F401
from .shards import (ExampleLoader, ShardLoader, build_shards, examples_to_arrays,  # noqa: F401
                     read_manifest)
