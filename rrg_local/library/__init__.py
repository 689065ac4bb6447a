"""The photo library: walking folders (`walk`), reading files (`reader`, `images`), recording them
(`scan`), following changes (`watch`), querying the index (`query`) and near-duplicates (`dupes`)."""
