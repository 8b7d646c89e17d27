"""Data curation (rung 05): a deliberately dirty instruction set whose every flaw is known (``dirty``), and the
course's reference for each stage of a curation pipeline (``stages``): normalisation and exact deduplication,
MinHash near-deduplication, semantic deduplication with sentence embeddings, quality filters that check answers
against the world, decontamination against the eval splits, and rebalancing of the task mix."""
