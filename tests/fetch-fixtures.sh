#!/bin/sh
# Fetch llama.cpp's tokenizer fixtures (vocab-only GGUF files and test
# vectors) from the npm package node-llama-cpp, for a machine that has no
# ../shared/fixtures/vocab beside the checkout.  Usage: fetch-fixtures.sh DIR
set -e
dir=${1:?usage: fetch-fixtures.sh DIR}
[ -f "$dir/README.md" ] && exit 0
command -v npm >/dev/null || { echo "fetch-fixtures: npm is needed (apt-get install npm)" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "fetching node-llama-cpp@3.21.1 for llama.cpp's vocab fixtures..."
(cd "$work" && npm pack --silent node-llama-cpp@3.21.1 >/dev/null && tar xzf node-llama-cpp-3.21.1.tgz)
git clone -q "$work/package/llama/gitRelease.bundle" "$work/src"
mkdir -p "$dir"
cp "$work"/src/models/ggml-vocab-llama-spm.gguf* "$work"/src/models/ggml-vocab-gpt-2.gguf* \
   "$work"/src/models/ggml-vocab-llama-bpe.gguf "$work"/src/models/ggml-vocab-qwen2.gguf \
   "$work"/src/models/ggml-vocab-phi-3.gguf "$dir"/
cp "$work"/src/LICENSE "$dir"/LICENSE.llama.cpp
echo "llama.cpp tokenizer fixtures, fetched by parm's make fixtures" > "$dir/README.md"
echo "fixtures in $dir"
