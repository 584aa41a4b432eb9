"""Photos -> a served classifier, in three floors: stages/ (what dvc.yaml runs) on the library (this folder) on served/ (what the registered model ships)."""
