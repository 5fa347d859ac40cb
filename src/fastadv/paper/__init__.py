"""The paper's figures and tables (figures, render), its published values (reference, published_values.yaml,
digitize), its analyses (lemma2: Lemma 2; cnn_analysis: Sec. 3's single-layer CNN) and the parity switches
with the official code (fidelity). May import: evaluation and everything it may import."""
