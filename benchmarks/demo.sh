#!/bin/sh
# The main job on real data: index a provider's served responses (gpt-3.5-turbo-0301 answering the
# 805 AlpacaEval prompts), store independent models' answers to the same prompts as references
# (the other vendors' API and open models: not OpenAI's own, which are the provider's siblings),
# then attribute two suspects against it: vicuna-7b, fine-tuned on ChatGPT conversations (a
# student), and guanaco-7b, fine-tuned on human-written OASST1 data; finally mark the served
# responses with a watermark and test marked and unmarked text for it.
set -eu
: "${ALPACAEVAL:=../shared/data/alpacaeval}" "${DEMO_DIR:=demo-out}" "${BIN:=.venv/bin}"

find_outputs() {  # shared/ layout (outputs/<model>.jsonl) or the AlpacaEval repository's
  for candidate in "$ALPACAEVAL/outputs/$1.jsonl" "$ALPACAEVAL/results/$1/model_outputs.json"; do
    if [ -f "$candidate" ]; then echo "$candidate"; return 0; fi
  done
  return 1
}

if ! provider=$(find_outputs gpt-3.5-turbo-0301) || ! student=$(find_outputs vicuna-7b) \
   || ! human=$(find_outputs guanaco-7b); then
  cat >&2 <<MSG
The demo needs AlpacaEval model outputs, and none were found under '$ALPACAEVAL'.
Either put this checkout beside the project's shared/ folder (../shared/data/alpacaeval), or
download the AlpacaEval repository's results for three models (CC BY-NC 4.0, research use):
  results/gpt-3.5-turbo-0301/model_outputs.json
  results/vicuna-7b/model_outputs.json
  results/guanaco-7b/model_outputs.json
from https://github.com/tatsu-lab/alpaca_eval (keep the results/<model>/ folders) and run
  make demo ALPACAEVAL=/path/to/alpaca_eval
MSG
  exit 2
fi

rm -rf "$DEMO_DIR"
mkdir -p "$DEMO_DIR"
echo "== index the provider's served responses: $provider"
"$BIN/fingerprint" index build "$provider" --index "$DEMO_DIR/idx"
"$BIN/fingerprint" index info "$DEMO_DIR/idx"
echo
echo "== store reference models (independent of the provider)"
for ref in claude-2 cohere gemini-pro mistral-medium Meta-Llama-3-8B-Instruct \
           Mistral-7B-Instruct-v0.2; do
  if outputs=$(find_outputs "$ref"); then
    "$BIN/fingerprint" reference add "$outputs" --index "$DEMO_DIR/idx" --name "$ref"
  else
    echo "reference $ref not found under $ALPACAEVAL: skipped" >&2
  fi
done

# The student is probed through an API, as a real suspect would be: its recorded answers are
# served by the replay server on a free local port, asked the provider's prompts, then attributed.
echo
echo "== probe vicuna-7b through an OpenAI-compatible API (the replay server on 127.0.0.1)"
port=$("$BIN/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$BIN/fingerprint" serve-replay "$student" --port "$port" --model vicuna-7b &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
"$BIN/python" - "$port" <<'PY'
import sys, time, urllib.request
for _ in range(200):
    try:
        urllib.request.urlopen(f"http://127.0.0.1:{sys.argv[1]}/v1/models", timeout=1)
        break
    except OSError:
        time.sleep(0.1)
PY
"$BIN/fingerprint" probe run "$provider" --endpoint "http://127.0.0.1:$port/v1" --model vicuna-7b \
  --out "$DEMO_DIR/vicuna-7b.jsonl" --concurrency 8
kill "$server" 2>/dev/null || true
wait "$server" 2>/dev/null || true
probed="$DEMO_DIR/vicuna-7b.jsonl"

for suspect in "$probed" "$human"; do
  name=$(basename "$(dirname "$suspect")")
  case "$suspect" in *.jsonl) name=$(basename "$suspect" .jsonl) ;; esac
  echo
  echo "== attribute $name"
  "$BIN/fingerprint" attribute "$suspect" --index "$DEMO_DIR/idx" --report "$DEMO_DIR/$name.html" --report "$DEMO_DIR/$name.pdf"
done
echo
echo "vicuna-7b (a ChatGPT student) should come out more ChatGPT-like than guanaco-7b (human"
echo "data): a higher provider_share and derived fraction, a lower p-value. See README 'Reading"
echo "the numbers' for what the p-value does and does not say."

# The watermark: a key, the post-hoc mark on the provider's served responses, and the detector on
# marked text and on a suspect that never saw the key. (How a mark survives distillation into a
# student is benchmarks/radioactivity.py: it trains models, too slow for a demo.)
echo
echo "== watermark: mark the served responses post-hoc, then test marked and unmarked text"
"$BIN/fingerprint" watermark keygen --out "$DEMO_DIR/provider.key"
"$BIN/fingerprint" watermark mark "$provider" --key "$DEMO_DIR/provider.key" \
  --out "$DEMO_DIR/served-marked.jsonl"
echo "-- the marked served responses:"
"$BIN/fingerprint" watermark detect "$DEMO_DIR/served-marked.jsonl" --key "$DEMO_DIR/provider.key"
echo "-- vicuna-7b, which never saw the key (p-values of unmarked text are uniform on [0, 1]):"
"$BIN/fingerprint" watermark detect "$probed" --key "$DEMO_DIR/provider.key"
