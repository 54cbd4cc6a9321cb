from fingerprint import normalize, prompt_hash, word_shingles


def test_nfkc_folds_compatibility_forms():
    assert normalize("ｆｕｌｌ\u00a0width ﬁle x²") == "full width file x2"


def test_casefold_is_stronger_than_lower():
    assert normalize("Straße") == normalize("STRASSE") == "strasse"


def test_whitespace_runs_collapse_and_ends_are_stripped():
    assert normalize("  a\t\tb\n\n c\u2003d  ") == "a b c d"


def test_punctuation_and_markdown_are_kept_by_the_normaliser():
    assert normalize("**Bold**: 1. item!") == "**bold**: 1. item!"


def test_shingles_are_word_trigrams_over_normalised_words():
    assert word_shingles("The quick, brown FOX jumps.") == {
        "the quick brown", "quick brown fox", "brown fox jumps"}


def test_short_text_is_one_shingle_and_empty_text_none():
    assert word_shingles("Hello there") == {"hello there"}
    assert word_shingles("  ...  ") == set()
    assert word_shingles("a b c d", n=2) == {"a b", "b c", "c d"}


def test_formatting_changes_do_not_change_shingles():
    assert word_shingles("Hello   World,\nhow are you") == word_shingles("hello world how ARE you")


def test_prompt_hash_ignores_case_and_spacing_only():
    assert prompt_hash("What is  MinHash?") == prompt_hash("what is minhash?")
    assert prompt_hash("What is MinHash?") != prompt_hash("What is SimHash?")
