#!/bin/bash
# fake snl: parse what xtask passes; write config.json (read back on --resume, as snl does),
# then result.json. SNL searches 3 epochs of 10 steps, the last cut short (27 steps); a control
# must get --search-steps (refused with snl, as snl does) and trains as long. A fresh uniform run at 60% fails after its config.json.
out=""; sel=snl; cmd=""; budget=""; resume=""; seed=0; search=""
while [ $# -gt 0 ]; do
  case "$1" in
    train|linearize|count) cmd=$1;;
    --out) out=$2; shift;;
    --resume) resume=$2; shift;;
    --selection) sel=$2; shift;;
    --budget) budget=$2; shift;;
    --seed) seed=$2; shift;;
    --search-steps) search=$2; shift;;
    --model|--threads|--dataset|--batch-size|--lasso|--search-lr|--warmup-epochs|--max-search-epochs|--finetune-epochs|--arch|--width|--epochs|--schedule) shift;;
    --json) ;;
    *) echo "fake snl: unexpected argument $1" >&2; exit 2;;
  esac; shift
done
if [ "$cmd" = count ]; then
  echo '{"total":1000,"kept":300,"threshold":0.01,"sites":[{"name":"layer1.0.alpha1","shape":[4,16,16],"total":600,"kept":250},{"name":"layer2.0.alpha1","shape":[8,8,8],"total":400,"kept":50}]}'
  exit 0
fi
if [ -n "$resume" ]; then
  out=$resume
  sel=$(sed -n 's/.*"selection":"\([^"]*\)".*/\1/p' "$out/config.json")
  budget=$(sed -n 's/.*"budget":"\([^"]*\)".*/\1/p' "$out/config.json")
  search=$(sed -n 's/.*"search":"\([^"]*\)".*/\1/p' "$out/config.json")
else
  if [ "$cmd" = linearize ]; then
    [ "$sel" = snl ] && [ -n "$search" ] && { echo "--search-steps is refused with --selection snl" >&2; exit 2; }
    [ "$sel" != snl ] && [ -z "$search" ] && { echo "fake snl: a control needs --search-steps" >&2; exit 2; }
  fi
  mkdir -p "$out"
  echo "{\"command\":\"$cmd\",\"selection\":\"$sel\",\"budget\":\"$budget\",\"search\":\"$search\"}" > "$out/config.json"
  [ "$sel" = uniform ] && [ "$budget" = "60%" ] && [ "$seed" = 0 ] && exit 3
fi
p=${budget%\%}; [ -z "$p" ] && p=100
acc=$(( 40 + p/2 + seed )); [ "$sel" = snl ] && acc=$((acc+10))
if [ "$cmd" = train ]; then
  echo '{"command":"train","selection":null,"budget":null,"relu_count":1000,"relu_total":1000,"val":{"samples":100,"top1":91,"top5":99,"loss":0.3},"test":{"samples":100,"top1":90.5,"top5":99,"loss":0.3},"wall_time_s":1.5,"seed":0,"epochs":2}' > "$out/result.json"
  echo '{"epoch":0,"seconds":2.0}' > "$out/metrics.jsonl"
  touch "$out/best.safetensors"
else
  lambdas='"lambda0":null,"lambda_final":null'
  [ "$sel" = snl ] && { search=27; lambdas='"lambda0":0.001,"lambda_final":0.0015'; }
  epochs=$(( (search + 9) / 10 ))
  echo "{\"command\":\"linearize\",\"selection\":\"$sel\",\"budget\":$((p*10)),\"relu_count\":$((p*10-3)),\"relu_total\":1000,\"val\":{\"samples\":100,\"top1\":$acc,\"top5\":99,\"loss\":0.3},\"test\":{\"samples\":100,\"top1\":$acc.5,\"top5\":99,\"loss\":0.3},\"wall_time_s\":1.5,\"seed\":$seed,\"search_epochs\":$epochs,\"search_steps\":$search,\"epochs_trained\":$((epochs+1)),$lambdas}" > "$out/result.json"
  touch "$out/model.safetensors"
fi
