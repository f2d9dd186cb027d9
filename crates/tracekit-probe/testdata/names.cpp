// A C++ method, an operator and a function template, called N times each (`names_cpp N`):
// their symbols are mangled (_ZN2tk3Foo3barEi, ...) and found by their C++ names; the
// operator's name holds `[`, which a pattern would read as a class.
#include <cstdio>
#include <cstdlib>

namespace tk {
struct Foo {
    __attribute__((noinline)) int bar(int x);
    __attribute__((noinline)) int operator[](int i);
};
int Foo::bar(int x) { return x + 1; }
int Foo::operator[](int i) { return i * 3; }

template <typename T> __attribute__((noinline)) T twice(T x) { return x + x; }
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? std::atol(argv[1]) : 1, sum = 0;
    tk::Foo foo;
    for (long i = 0; i < n; i++) {
        sum += foo.bar(static_cast<int>(i));
        sum += tk::twice<long>(i);
        sum += foo[static_cast<int>(i)];
    }
    std::printf("%ld\n", sum);
    return 0;
}
