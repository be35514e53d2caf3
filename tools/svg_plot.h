/* svg_plot.h: a small standalone-SVG scatter-plot writer for `quench report`: linear x axis,
 * linear or log-10 y axis (a labelled tick per decade), one labelled marker per point with
 * labels placed so that they do not overlap each other or the markers. */
#ifndef QN_SVG_PLOT_H
#define QN_SVG_PLOT_H

#include <stdbool.h>
#include <stdio.h>

/* One marker. */
typedef struct svg_point {
  double x;          /* data x */
  double y;          /* data y; on a log axis y <= 0 is drawn hollow at the axis floor */
  const char* label; /* UTF-8 text beside the marker (escaped on output); NULL = none */
  int group;         /* colour index into a fixed 8-colour palette (wraps) */
} svg_point;

/* A whole plot. */
typedef struct svg_scatter {
  const char* title;       /* first line at the top, or NULL */
  const char* subtitle;    /* smaller second line, or NULL */
  const char* x_title;     /* text under the x axis */
  const char* y_title;     /* text beside the y axis (rotated) */
  const char* floor_note;  /* shown under the plot when a point was drawn at the log floor */
  bool y_log;              /* log-10 y axis with decades 1e-4, 1e-3...; else linear */
  int width, height;       /* pixels; 0 = 720 x 480 */
  const svg_point* points; /* [n_points] */
  int n_points;
} svg_scatter;

/* Writes the plot to f as a complete SVG document; false if a write failed. Non-finite
 * coordinates are left out of the axis range and not drawn. */
bool svg_write_scatter(FILE* f, const svg_scatter* p);

#endif
