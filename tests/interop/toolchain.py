"""The reference implementation's toolchain for the interop tier: Apache Iceberg Java (the Spark 3.5 runtime
jar from the PyPI wheel `snowpark-connect-deps-iceberg`) on pyspark, with the Debian PostgreSQL JDBC driver.

Installed once by `scripts/interop-setup` into a folder outside the repository and reused by every run:
`$LIFECYCLE_INTEROP_HOME` (default `~/.cache/artemis-lifecycle/interop`), one sub-folder per package set.

The wheel's runtime jar was built without the Jackson classes Iceberg relocates to
`org.apache.iceberg.shaded.com.fasterxml.jackson` (the first metadata write fails with NoClassDefFoundError),
so `install` builds them once from pyspark's own Jackson jars by renaming the package inside every class file.

    python -m tests.interop.toolchain install   # what scripts/interop-setup runs; prints the folder
"""

from __future__ import annotations

import hashlib
import os
import shutil
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

PACKAGES = ("pyspark==3.5.9", "py4j==0.10.9.7", "snowpark-connect-deps-iceberg==1.0.3")
JDBC_JAR = Path("/usr/share/java/postgresql.jar")
RELOCATION_VERSION = "1"  # bump when the relocation below changes: a new folder is built
FROM, TO = "com/fasterxml/jackson/", "org/apache/iceberg/shaded/com/fasterxml/jackson/"


def home() -> Path:
    base = os.environ.get("LIFECYCLE_INTEROP_HOME") or str(Path.home() / ".cache" / "artemis-lifecycle" / "interop")
    stamp = hashlib.sha256("\n".join((*PACKAGES, RELOCATION_VERSION)).encode()).hexdigest()[:12]
    return Path(base) / stamp


def site_dir() -> Path:
    return home() / "site"


def shaded_jar() -> Path:
    return home() / "iceberg-shaded-jackson.jar"


def java() -> str | None:
    if os.environ.get("JAVA_HOME"):
        candidate = Path(os.environ["JAVA_HOME"]) / "bin" / "java"
        if candidate.exists():
            return str(candidate)
    return shutil.which("java")


def missing() -> str | None:
    """Why the toolchain cannot run here (None: it can)."""
    if java() is None:
        return "no Java runtime (java not on PATH, JAVA_HOME unset): the Iceberg Java interop tier needs Java 17"
    if not (home() / ".complete").exists():
        return f"the interop toolchain is not installed in {home()}: run scripts/interop-setup"
    if not JDBC_JAR.exists():
        return f"{JDBC_JAR} is missing: run scripts/interop-setup (apt package libpostgresql-jdbc-java)"
    return None


def iceberg_runtime_jar() -> Path:
    jars = sorted((site_dir() / "snowpark_connect_deps_iceberg" / "jars").glob("iceberg-spark-runtime-3.5_2.12-*.jar"))
    if not jars:
        raise RuntimeError(f"no iceberg-spark-runtime-3.5_2.12 jar under {site_dir()}")
    return jars[-1]


def classpath() -> list[str]:
    """The driver's classpath: the Iceberg runtime (not the wheel's separate extensions jar: the runtime jar
    already has them), the rebuilt relocated Jackson, the PostgreSQL driver."""
    return [str(iceberg_runtime_jar()), str(shaded_jar()), str(JDBC_JAR)]


def activate() -> None:
    """Make pyspark importable in this process."""
    site = str(site_dir())
    if site not in sys.path:
        sys.path.insert(0, site)


# ---------------------------------------------------------------------------------------- relocation
# Constant-pool entry sizes after the tag byte (JVM spec 4.4); Utf8 (1) is variable-length.
_ENTRY_SIZE = {3: 4, 4: 4, 5: 8, 6: 8, 7: 2, 8: 2, 9: 4, 10: 4, 11: 4, 12: 4, 15: 3, 16: 2, 17: 4, 18: 4,
               19: 2, 20: 2}


def _rename(text: bytes) -> bytes:
    slashed, dotted = FROM.encode(), FROM.replace("/", ".").encode()
    if slashed not in text and dotted not in text:
        return text
    return text.replace(slashed, TO.encode()).replace(dotted, TO.replace("/", ".").encode())


def relocate_class(data: bytes) -> bytes:
    """The class file with every constant-pool string naming the Jackson package renamed: class references,
    descriptors, signatures and string literals (Class.forName) all live in Utf8 entries."""
    if data[:4] != b"\xca\xfe\xba\xbe":
        raise ValueError("not a class file")
    count = struct.unpack_from(">H", data, 8)[0]
    out = bytearray(data[:10])
    pos, index = 10, 1
    while index < count:
        tag = data[pos]
        if tag == 1:
            (length,) = struct.unpack_from(">H", data, pos + 1)
            text = _rename(data[pos + 3:pos + 3 + length])
            out += bytes((1,)) + struct.pack(">H", len(text)) + text
            pos += 3 + length
        else:
            size = _ENTRY_SIZE[tag]
            out += data[pos:pos + 1 + size]
            pos += 1 + size
            if tag in (5, 6):  # long and double take two slots
                index += 1
        index += 1
    out += data[pos:]
    return bytes(out)


def build_shaded_jackson(target: Path) -> None:
    import pyspark

    jars = Path(pyspark.__file__).parent / "jars"
    sources = [p for name in ("annotations", "core", "databind", "datatype-jsr310")
               for p in sorted(jars.glob(f"jackson-{name}-2*.jar"))]
    if len(sources) != 4:
        raise RuntimeError(f"expected 4 Jackson jars in {jars}, found {[p.name for p in sources]}")
    partial = target.with_suffix(".partial")
    seen: set[str] = set()
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED) as out:
        out.writestr("META-INF/MANIFEST.MF", "Manifest-Version: 1.0\n")
        for source in sources:
            with zipfile.ZipFile(source) as jar:
                for entry in jar.infolist():
                    name = entry.filename
                    if entry.is_dir() or name.startswith("META-INF/versions/") or name.endswith("module-info.class"):
                        continue
                    data = jar.read(name)
                    if name.startswith(FROM):
                        name = TO + name[len(FROM):]
                        if name.endswith(".class"):
                            data = relocate_class(data)
                    elif name.startswith("META-INF/services/"):
                        name, data = _rename(name.encode()).decode(), _rename(data)
                    elif name.startswith("META-INF/"):
                        continue
                    if name not in seen:
                        seen.add(name)
                        out.writestr(name, data)
    partial.replace(target)


# ---------------------------------------------------------------------------------------- install
def install() -> Path:
    """pip-install the packages into the cache folder (once per package set) and build the Jackson jar."""
    root = home()
    if (root / ".complete").exists():
        return root
    root.mkdir(parents=True, exist_ok=True)
    site = site_dir()
    if site.exists():
        shutil.rmtree(site)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", "--no-deps",
                    "--target", str(site), *PACKAGES], check=True)
    activate()
    build_shaded_jackson(shaded_jar())
    iceberg_runtime_jar()
    (root / ".complete").write_text("\n".join(PACKAGES) + "\n")
    return root


if __name__ == "__main__":
    if sys.argv[1:] != ["install"]:
        sys.exit("usage: python -m tests.interop.toolchain install")
    print(install())
