#!/bin/bash
# fake snl: parse --out, --selection, --budget; write config.json (read back on --resume,
# as snl does), then result.json. A fresh uniform run at 60% fails after its config.json.
out=""; sel=""; cmd=""; budget=""; resume=""; model=""
while [ $# -gt 0 ]; do
  case "$1" in
    train|linearize|count) cmd=$1;;
    --out) out=$2; shift;;
    --resume) resume=$2; shift;;
    --selection) sel=$2; shift;;
    --budget) budget=$2; shift;;
    --model) model=$2; shift;;
    --json) ;;
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
else
  mkdir -p "$out"
  echo "{\"command\":\"$cmd\",\"selection\":\"$sel\",\"budget\":\"$budget\"}" > "$out/config.json"
  [ "$sel" = uniform ] && [ "$budget" = "60%" ] && exit 3
fi
p=${budget%\%}; [ -z "$p" ] && p=100
acc=$(( 40 + p/2 )); [ "$sel" = snl ] && acc=$((acc+10))
if [ "$cmd" = train ]; then
  echo '{"command":"train","selection":null,"budget":null,"relu_count":1000,"relu_total":1000,"val":{"samples":100,"top1":91,"top5":99,"loss":0.3},"test":{"samples":100,"top1":90.5,"top5":99,"loss":0.3},"wall_time_s":1.5,"seed":0,"dataset":"synthetic","arch":"resnet18","best_epoch":2}' > "$out/result.json"
  touch "$out/best.safetensors"
else
  echo "{\"command\":\"linearize\",\"selection\":\"$sel\",\"budget\":$((p*10)),\"relu_count\":$((p*10-3)),\"relu_total\":1000,\"val\":{\"samples\":100,\"top1\":$acc,\"top5\":99,\"loss\":0.3},\"test\":{\"samples\":100,\"top1\":$acc.5,\"top5\":99,\"loss\":0.3},\"wall_time_s\":1.5,\"seed\":0,\"dataset\":\"synthetic\",\"arch\":\"resnet18\",\"best_epoch\":1}" > "$out/result.json"
  touch "$out/model.safetensors"
fi
