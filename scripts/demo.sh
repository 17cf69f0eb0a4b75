#!/usr/bin/env bash
# The main job on the bundled sample library: build it, index + analyze it, then show what Albumen found.
# Called by `make demo` after set-up; idempotent (a second run re-uses the library and the index).
set -euo pipefail
LIB=${1:-build/sample-library}
DATA=${2:-build/demo-data}
ALB=(.venv/bin/albumen --data-dir "$DATA")

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

step "sample library from real photos -> $LIB"
"${ALB[@]}" sample-library "$LIB"
step "index + on-device analysis (EXIF, hashes, thumbnails, tags, embeddings, faces, quality, places)"
"${ALB[@]}" index "$LIB"
step "what the library holds"
"${ALB[@]}" stats
step "people (faces grouped on this machine)"
"${ALB[@]}" people list
step "places (offline reverse geocoding; home inferred from the library)"
"${ALB[@]}" places
for q in "astronaut" "a cat" "coffee" "photos in Tokyo" "flowers last year"; do
  step "search: \"$q\""
  "${ALB[@]}" search "$q" --limit 5
done
PORTRAIT_IN=$(.venv/bin/python -c "import json,sys; g=json.load(open(sys.argv[1])); print(sys.argv[1].rsplit('/',1)[0] + '/' + next(iter(g['people'].values()))['photos'][0])" "$LIB/ground_truth.json")
step "portrait mode: $PORTRAIT_IN -> build/demo-portrait.jpg"
"${ALB[@]}" portrait "$PORTRAIT_IN" build/demo-portrait.jpg --overwrite
FACTS=$'Kind: trip\nDates: 12-19 June 2024\nPlaces: Lisbon (Lisbon, Portugal)\nPeople: Anna, Tom\nScenes: beach, sunset, seafood\nPhotos: 84'
SYSTEM=$(.venv/bin/python -c "from albumen.llm.train.datasets.titles import SYSTEM_PROMPT; print(SYSTEM_PROMPT)")
step "on-device LLM: a memory title as guided JSON, SmolLM2-135M base model"
"${ALB[@]}" llm generate --model smollm2-135m --max-tokens 48 --json-schema scripts/title.schema.json \
  --system "$SYSTEM" "$FACTS"
step "the same with the memory-titles LoRA adapter (assets/adapters/titles)"
"${ALB[@]}" llm generate --model smollm2-135m --max-tokens 48 --json-schema scripts/title.schema.json \
  --adapter assets/adapters/titles --system "$SYSTEM" "$FACTS"
echo
