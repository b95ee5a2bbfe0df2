#!/usr/bin/env bash
# The Spark NLP NerDL peer's environment (benchmarks/peers/nerdl.py), made once under build/peers/nerdl/:
#   build/sparknlp/jars/        Spark NLP 5.5.3 + the jars its annotators need (.ci/sparknlp-env.sh, shared)
#   build/peers/nerdl/jars/     TensorFlow Java for NerDL (Maven Central, see below)
#   build/peers/nerdl/venv/     pyspark 3.5.5 + spark-nlp 5.5.3 + what clinlake's engine needs in Spark's
#                               Python workers (numpy, onnxruntime, pyyaml) + pyarrow/pandas (mapInArrow)
#   build/peers/nerdl/tfvenv/   Python TensorFlow, only to write NerDL's graph (below)
#   build/peers/nerdl/graphs/   blstm_3_200_128_120.pb: the NerDL graph for 3 tags, 200-d vectors
# Idempotent: a complete environment (its READY stamp) is left as is.
#
# Why TensorFlow Java from org.tensorflow: spark-nlp_2.12 5.5.3's POM declares
# com.johnsnowlabs.nlp:tensorflow-cpu_2.12:0.4.4, which Maven Central does not serve (it has 0.2.2,
# 0.3.1, 0.3.3 only: "Could not find artifact ... in central"). That artifact repackages TensorFlow
# Java 0.4.x (TF 2.7); org.tensorflow:tensorflow-core-api:0.4.2 (+ its linux-x86_64 natives and
# javacpp's) is the same API from Maven Central, and Spark NLP 5.5.3 trains and tags with it.
# Why a generated graph: the jar's ner-dl/ graphs are for 100/128/256/300/... dimensional vectors;
# clinlake's vectors have 200 dimensions. Spark NLP's own Python graph builder writes one; it needs
# Python TensorFlow with tensorflow-addons (tensorflow-cpu 2.12.1 is the oldest for Python 3.11;
# TF Java 2.7 imports its graph). The builder is loaded from spark-nlp's package without its
# __init__ (which imports pyspark).
set -euo pipefail
cd "$(dirname "$0")/../.."

PYSPARK_VERSION=3.5.5
SPARKNLP_VERSION=5.5.3
TF_JAVA_VERSION=0.4.2
TF_PY=("tensorflow-cpu==2.12.1" "tensorflow-addons==0.21.0")
GRAPH_NTAGS=3 GRAPH_DIM=200 GRAPH_LSTM=128 GRAPH_NCHARS=120
ROOT=build/peers/nerdl
STAMP="$ROOT/READY-${SPARKNLP_VERSION}-${PYSPARK_VERSION}-tf${TF_JAVA_VERSION}-g${GRAPH_NTAGS}_${GRAPH_DIM}_${GRAPH_LSTM}_${GRAPH_NCHARS}"
PY=${PYTHON:-python3}

if [ -f "$STAMP" ]; then
  echo "NerDL peer environment ready ($ROOT)"
  exit 0
fi
mkdir -p "$ROOT/jars" "$ROOT/graphs" "$ROOT/tfjava"

# 1. Spark NLP's jars (the interop tests' environment; idempotent).
bash .ci/sparknlp-env.sh

# 2. TensorFlow Java (+ natives) for NerDL.
cat > "$ROOT/tfjava/pom.xml" <<EOF
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>local</groupId><artifactId>nerdl-tf</artifactId><version>1</version>
  <dependencies>
    <dependency><groupId>org.tensorflow</groupId><artifactId>tensorflow-core-api</artifactId><version>${TF_JAVA_VERSION}</version></dependency>
    <dependency><groupId>org.tensorflow</groupId><artifactId>tensorflow-core-api</artifactId><version>${TF_JAVA_VERSION}</version><classifier>linux-x86_64</classifier></dependency>
    <dependency><groupId>org.bytedeco</groupId><artifactId>javacpp</artifactId><version>1.5.6</version><classifier>linux-x86_64</classifier></dependency>
  </dependencies>
</project>
EOF
for attempt in 1 2 3; do
  if (cd "$ROOT/tfjava" && mvn -q -B dependency:copy-dependencies -DoutputDirectory=../jars); then break; fi
  [ "$attempt" = 3 ] && { echo "could not fetch TensorFlow Java ${TF_JAVA_VERSION} from Maven Central" >&2; exit 1; }
  sleep $((attempt * 10))
done

# 3. The Spark 3.5 venv of the peer (driver and Python workers).
[ -x "$ROOT/venv/bin/python" ] || "$PY" -m venv "$ROOT/venv"
"$ROOT/venv/bin/pip" install -q "pyspark==${PYSPARK_VERSION}" "spark-nlp==${SPARKNLP_VERSION}" \
  "numpy>=1.26,<3" "pyarrow>=15" "pandas>=2.2,<3" "onnxruntime>=1.20,<2" "pyyaml>=6"

# 4. The NerDL graph, written by Spark NLP's graph builder under Python TensorFlow.
[ -x "$ROOT/tfvenv/bin/python" ] || "$PY" -m venv "$ROOT/tfvenv"
"$ROOT/tfvenv/bin/pip" install -q "${TF_PY[@]}"
SPARKNLP_PKG=$("$ROOT/venv/bin/python" -c "import importlib.util as u; print(u.find_spec('sparknlp').submodule_search_locations[0])")
TF_CPP_MIN_LOG_LEVEL=2 "$ROOT/tfvenv/bin/python" - "$SPARKNLP_PKG" "$ROOT/graphs" \
  "$GRAPH_NTAGS" "$GRAPH_DIM" "$GRAPH_LSTM" "$GRAPH_NCHARS" >"$ROOT/graph_build.log" 2>&1 <<'EOF'
import sys, types
package, out, ntags, dim, lstm, nchars = sys.argv[1], sys.argv[2], *map(int, sys.argv[3:])
for name, path in (("sparknlp", package), ("sparknlp.training", package + "/training"),
                   ("sparknlp.training._tf_graph_builders", package + "/training/_tf_graph_builders")):
    module = types.ModuleType(name)  # packages without their __init__ (which imports pyspark)
    module.__path__ = [path]
    sys.modules[name] = module
from sparknlp.training._tf_graph_builders.ner_dl.create_graph import create_graph
create_graph(model_location=out, ntags=ntags, embeddings_dim=dim, nchars=nchars, lstm_size=lstm)
EOF
GRAPH="$ROOT/graphs/blstm_${GRAPH_NTAGS}_${GRAPH_DIM}_${GRAPH_LSTM}_${GRAPH_NCHARS}.pb"
[ -s "$GRAPH" ] || { echo "the graph builder wrote no $GRAPH (see $ROOT/graph_build.log)" >&2; exit 1; }

rm -f "$ROOT"/READY-*
touch "$STAMP"
echo "NerDL peer environment ready ($ROOT): $(ls "$ROOT/jars" | tr '\n' ' ') $(basename "$GRAPH")"
