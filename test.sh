#!/usr/bin/env bash
# Builds the solution (Release) and runs every test project under tests/. The last line of
# output is always "N passed, N failed" (", N skipped" when any were skipped). Exits non-zero
# when the build fails, a test fails, or a test run crashes or hangs.
set -euo pipefail
cd "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")"

./scripts/install-deps.sh

passed=0 failed=0 skipped=0 status=0
summary() {
  local line="$passed passed, $failed failed"
  ((skipped)) && line+=", $skipped skipped"
  echo "$line"
}

echo "== build (Release)"
if ! dotnet build Cluster.sln -c Release -nologo -v q -clp:ErrorsOnly; then
  echo "BUILD FAILED"
  summary
  exit 1
fi

results=$(mktemp -d /tmp/flotilla-test-results.XXXXXX)
trap 'rm -rf "$results"' EXIT

# Reads one attribute of the <Counters .../> element of a trx file.
counter() { grep -o '<Counters [^>]*>' "$1" | grep -o " $2=\"[0-9]*\"" | grep -o '[0-9]*' || echo 0; }

shopt -s nullglob
for proj in tests/*/*.csproj; do
  name=$(basename "$proj" .csproj)
  trx="$results/$name.trx"
  echo "== test $name"
  rc=0
  # --blame-hang-timeout: dumps and kills a test that hangs; timeout: guard for the whole run.
  timeout --kill-after=30s 30m \
    dotnet test "$proj" -c Release --no-build --nologo \
      --logger "trx;LogFileName=$trx" --logger "console;verbosity=normal" \
      --results-directory "$results" --blame-hang-timeout 5m || rc=$?
  if [[ -f "$trx" ]]; then
    total=$(counter "$trx" total)
    executed=$(counter "$trx" executed)
    p=$(counter "$trx" passed)
    f=$(( $(counter "$trx" failed) + $(counter "$trx" error) + $(counter "$trx" timeout) + $(counter "$trx" aborted) ))
    passed=$((passed + p))
    failed=$((failed + f))
    skipped=$((skipped + total - executed))
  else
    f=0
  fi
  if ((rc != 0)); then
    status=1
    if ((f == 0)); then
      # Crash, hang or timeout without a failing test recorded: count the run as one failure.
      echo "test run of $name exited with $rc without recording a failure"
      failed=$((failed + 1))
    fi
  fi
done

# Recap of the failures right above the summary line, so a log that keeps only its tail
# (CI) still says which test failed and why.
recap() {
  perl -0777 -ne '
    # Passed results are self-closing elements; failed ones carry an <Output> body.
    my $s = $_;
    while ($s =~ /<UnitTestResult\b([^>]*?)(\/?)>/g) {
      my ($attrs, $selfclose) = ($1, $2);
      my $body = "";
      if (!$selfclose) {
        my $start = pos($s);
        my $end = index($s, "</UnitTestResult>", $start);
        $body = substr($s, $start, $end - $start) if $end >= 0;
      }
      next unless $attrs =~ /outcome="(Failed|Error|Timeout|Aborted)"/;
      my ($name) = $attrs =~ /testName="([^"]*)"/;
      my ($msg) = $body =~ /<Message>(.*?)<\/Message>/s;
      my ($stack) = $body =~ /<StackTrace>(.*?)<\/StackTrace>/s;
      for ($name, $msg, $stack) { $_ //= ""; s/&lt;/</g; s/&gt;/>/g; s/&quot;/"/g; s/&apos;/\x27/g; s/&amp;/&/g; }
      my @stack = grep { /Flotilla/ } split /\n/, $stack;
      splice @stack, 6 if @stack > 6;
      print "FAILED $name\n  ", substr($msg, 0, 2000) =~ s/\n/\n  /gr, "\n", map("  $_\n", @stack);
    }' "$@"
}
if ((failed)); then
  status=1
  echo "== failures"
  recap "$results"/*.trx || true
fi
summary
exit "$status"
