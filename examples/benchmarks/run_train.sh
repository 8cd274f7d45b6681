# Sourced by accuracy.sh and accuracy_long.sh: run NAME ARGS... trains into $OUT/NAME (log in
# $OUT/NAME.log) unless $OUT/NAME/history.json already has a test result, so a run resumes.
run() {
    name=$1; shift
    if grep -q '"test"' "$OUT/$name/history.json" 2>/dev/null; then return; fi
    echo "$(date +%T) $name: trec-tflm train $*"
    trec-tflm train --checkpoint-path "$OUT/$name" "$@" > "$OUT/$name.log" 2>&1
    echo "$(date +%T) $name: $(grep -ao 'test accuracy: [0-9.]*' "$OUT/$name.log" | tail -n 1)"
}
