/* svg_bars.h: a small standalone-SVG horizontal bar chart writer (for `quench sensitivity`):
 * one labelled bar per row, top to bottom in the order given, a linear or log-10 value axis
 * along the bottom, and each bar's value printed at its end. Same look as svg_plot.h. */
#ifndef QN_SVG_BARS_H
#define QN_SVG_BARS_H

#include <stdbool.h>
#include <stdio.h>

/* One bar. */
typedef struct svg_bar {
  const char* label;      /* UTF-8 text left of the bar (escaped on output) */
  double value;           /* bar length in data units; non-finite values are not drawn; on a
                             log axis values <= 0 get no bar (their text sits at the floor) */
  const char* value_text; /* printed after the bar's end; NULL = the value as %.3g */
  int group;              /* colour index into a fixed 8-colour palette (wraps) */
} svg_bar;

/* A whole chart. */
typedef struct svg_hbars {
  const char* title;    /* first line at the top, or NULL */
  const char* subtitle; /* smaller second line, or NULL */
  const char* x_title;  /* text under the value axis */
  const char* note;     /* small line under the chart, or NULL */
  bool x_log;           /* log-10 value axis (decades); else linear from 0 */
  int width;            /* pixels; 0 = 760. The height follows from the number of bars */
  const svg_bar* bars;  /* [n_bars], drawn top to bottom */
  int n_bars;
} svg_hbars;

/* Writes the chart to f as a complete SVG document; false if a write failed. */
bool svg_write_hbars(FILE* f, const svg_hbars* c);

#endif
